# stamp-router: the router and its admin API in one process.
#   docker build -t stamp-router .
#   docker run -p 8080:8080 -v /path/to/conf:/etc/stamp-router:ro stamp-router
# The config is mounted, not baked in: it names the stamps, which differ per deployment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stamp-router \
    && mkdir -p /etc/stamp-router /var/lib/stamp-router \
    && chown stamp-router /var/lib/stamp-router

USER stamp-router
# The last known good config lives here (control.state_dir); mount a volume to keep it
# across restarts.
VOLUME ["/var/lib/stamp-router"]
EXPOSE 8080 9901

# slim has no curl; the admin API listens on loopback by default, which is inside the
# container's own network namespace, so the probe reaches it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["stamp-router"]
CMD ["serve", "-c", "/etc/stamp-router/config.toml"]
