# stamp-router: the router and its admin API in one process.
#   docker build -t stamp-router .                       # with the Route 53 provider's SDK
#   docker build --build-arg EXTRAS= -t stamp-router .   # without it
#   docker run -p 8080:8080 -v /path/to/conf:/etc/stamp-router:ro -v stamp-state:/var/lib/stamp-router stamp-router
# The config is mounted, not baked in: it names the stamps, which differ per deployment.
#
# Two stages: the builder compiles the data path with gcc (setup.py, router/build.py) into
# wheels; the image installs those wheels on slim, with no compiler in it.

FROM python:3.11-slim AS builder
ARG EXTRAS=route53
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints.txt pyproject.toml setup.py README.md ./
COPY router ./router
# The build requirements pinned like everything else (constraints.txt), then a wheel of the
# router (compiled; without debug information, a fifth of the size) and of each
# dependency for the image to install from.
RUN pip install -c constraints.txt setuptools Cython \
    && CFLAGS=-g0 pip wheel --no-build-isolation -c constraints.txt --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim

# Optional dependency groups of pyproject.toml; route53 brings boto3 for `dns sync`.
ARG EXTRAS=route53

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The last known good config goes to the image's volume, whatever control.state_dir
    # says: its default is relative to the config, which is mounted read-only.
    STAMP_ROUTER_STATE_DIR=/var/lib/stamp-router

# The same pinned versions as `make` (constraints.txt; `make constraints` updates it), from
# the builder's wheels only; the image refuses to be built interpreted.
COPY constraints.txt /tmp/
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels -c /tmp/constraints.txt "stamp-router${EXTRAS:+[$EXTRAS]}" \
    && stamp-router --version | grep -q '(compiled: ' \
    && rm /tmp/constraints.txt \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stamp-router \
    && mkdir -p /etc/stamp-router /var/lib/stamp-router \
    && chown stamp-router /var/lib/stamp-router

USER stamp-router
# Mount a volume here to keep the last known good across restarts.
VOLUME ["/var/lib/stamp-router"]
# The proxy only: the admin API listens on loopback by default (admin.listen), so it is
# not reachable from outside the container unless the config says otherwise.
EXPOSE 8080

# slim has no curl; the admin API listens on loopback by default, which is inside the
# container's own network namespace, so the probe reaches it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["stamp-router"]
CMD ["serve", "-c", "/etc/stamp-router/config.toml"]
