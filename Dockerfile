# syntax=docker/dockerfile:1
# d6 bridge: `d6-bridge serve` on port 8080, as a non-root user, on a slim Python base.
#
#   docker build -t d6-bridge .
#   docker run --env-file .env -p 8080:8080 d6-bridge            # serve (the default command)
#   docker run -p 8081:8081 --no-healthcheck d6-bridge simulator --host 0.0.0.0   # the d6 simulator
#   (the HEALTHCHECK asks serve's /health/live: other commands disable or replace it)
#
# KEEP IN SYNC: deploy/check-image-steps.sh runs the build stage's commands below (the same Python minor
# version, `python -m venv`, the same COPYs and the same `pip install` line) outside Docker, and CI runs
# that script. It also runs the HEALTHCHECK command from this file against a real `serve`. If you change
# a build-stage command here, change the script too; it fails when the lines it looks for change.

# For reproducible builds pin a digest: python:3.11-slim@sha256:.... Both stages must use the same image
# (the venv is copied from one to the other), and deploy/check-image-steps.sh reads the version here.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stage: the package and its pinned dependencies in a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY bridge ./bridge
# Wheels only (--only-binary): every dependency has a wheel for linux/amd64 and linux/arm64, so no
# compiler is needed here either, and a dependency without one fails the build loudly instead of
# compiling. The project itself is built from ./ by pip as usual. No dev extras: no pytest, ruff, mypy.
RUN /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: .

# ---- final stage: the slim runtime, the virtual environment, a non-root user; no build tools ---------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="d6-bridge" \
      org.opencontainers.image.description="Signed webhooks for the poll-only d6 Integrate API" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_LOG_FORMAT=json \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_PORT=8080
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin bridge
# Owned by root and read-only to the service user; works with a read-only root filesystem.
COPY --from=build /opt/venv /opt/venv
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# serve drains on SIGTERM (stops polling, lets deliveries in flight finish, about 35 s at worst):
# give it time to (docker stop -t 45, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# The slim image has no curl: ask /health/live with Python's urllib (non-2xx or no answer: exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % (os.environ.get('BRIDGE_PORT') or '8080'), timeout=4)"]
ENTRYPOINT ["d6-bridge"]
CMD ["serve"]
