# C declarations of retry.py for the compiled build (the .py stays the source).
cpdef bint may_retry(Py_ssize_t tried, Py_ssize_t attempts, Py_ssize_t candidates, bint within_budget)
cpdef bint replayable(bint replay_held, bytes method, bint request_sent)
cpdef object after_loss(bint response_started, bint stale_reuse, bint safe_to_repeat, object kind,
                        bint retry_allowed)
