# syntax=docker/dockerfile:1
# Build stage: a wheel and its dependencies in a virtual environment. Compilers stay here.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install .

# Final stage: the slim runtime, the virtual environment, a non-root user. No build tools.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 BRIDGE_LOG_FORMAT=json
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home bridge
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2).status == 200 else 1)"
ENTRYPOINT ["d6-bridge"]
CMD ["serve"]
