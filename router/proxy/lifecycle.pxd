# C declarations of lifecycle.py for the compiled build (the .py stays the source).
cpdef tuple step(int phase, int event)
