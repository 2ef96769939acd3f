# The API image (`recsys serve`, Cloud Run): only the API's dependencies (docker/proxy-requirements.in) at
# requirements.lock's versions; no TFX, Beam, Dataflow, TFRS or DuckDB. TensorFlow remains (see that file).
#   docker build -f docker/proxy.Dockerfile -t <registry>/proxy:0.1.0 .
FROM python:3.10-slim-bookworm AS build
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9 && uv venv --python python3.10 /opt/venv
COPY requirements.lock docker/proxy-requirements.in /build/
RUN uv pip install --python /opt/venv/bin/python --compile-bytecode \
        -r /build/proxy-requirements.in -c /build/requirements.lock
# Only what `recsys serve` imports (tests/test_layering.py keeps the API and the serving code apart from the
# pipeline); setup.py packages whichever of the project's packages are present.
COPY setup.py contract.py tensorflow_env.py /build/
COPY cli /build/cli
COPY serving /build/serving
COPY proxy /build/proxy
RUN uv pip install --python /opt/venv/bin/python --no-deps --no-build-isolation --compile-bytecode /build

FROM python:3.10-slim-bookworm
COPY --from=build /opt/venv /opt/venv
# The CLI listens on 127.0.0.1 unless told otherwise; $PORT (Cloud Run sets it) defaults to 8080.
# Everything written goes to /tmp (the feedback database), so the root filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_ENABLE_ONEDNN_OPTS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    RECSYS_HOST=0.0.0.0 \
    RECSYS_FEEDBACK_DB=/tmp/feedback.sqlite
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp recsys
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m CMD ["python", "-c", \
    "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.getenv('PORT', '8080'), timeout=4)"]
CMD ["recsys", "serve"]
