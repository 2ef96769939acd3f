# The pipeline image: every TFX component on Vertex AI Pipelines (KubeflowV2DagRunner's default_image), the
# Trainer on Vertex AI Training and the Dataflow workers (--sdk_container_image) run in it.
#   CPU: docker build -f docker/pipeline.Dockerfile -t <registry>/pipeline:0.1.0 .
#   GPU: docker build -f docker/pipeline.Dockerfile --build-arg VARIANT=gpu -t <registry>/pipeline-gpu:0.1.0 .
ARG VARIANT=cpu

FROM python:3.10-slim-bookworm AS base-cpu

# TensorFlow 2.16 is built against CUDA 12.3 and cuDNN 8.9 (tensorflow.org/install/source, "Tested build
# configurations"). The cudnn9 CUDA images lack the libcudnn.so.8 it loads, so cuDNN 8.9 comes from NVIDIA's
# apt repository, which the CUDA images configure. Ubuntu 22.04's python3 is 3.10.
FROM nvidia/cuda:12.3.2-runtime-ubuntu22.04 AS base-gpu
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.10 python3-pip libcudnn8=8.9.7.29-1+cuda12.2 \
    && rm -rf /var/lib/apt/lists/*

FROM base-${VARIANT}
# RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: Beam's boot would otherwise make a fresh venv without our packages.
ENV TF_USE_LEGACY_KERAS=1 \
    TF_ENABLE_ONEDNN_OPTS=1 \
    PYTHONUNBUFFERED=1 \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/opt/venv/bin:$PATH

# A venv rather than --system: on the GPU base the system Python is Ubuntu's, whose packages uv must not touch.
# TFX calls `python -m pip`, hence pip in the lock; `python` on the PATH is the venv's.
RUN python3 -m pip install --no-cache-dir uv==0.13.9 && uv venv --python python3.10 /opt/venv
COPY requirements.lock /build/
RUN uv pip sync --python /opt/venv/bin/python --compile-bytecode /build/requirements.lock
COPY setup.py contract.py evaluation.py tensorflow_env.py /build/
COPY cli /build/cli
COPY serving /build/serving
COPY tfx_pipeline /build/tfx_pipeline
COPY transform /build/transform
COPY trainer_module /build/trainer_module
COPY proxy /build/proxy
# --no-build-isolation: build with the locked setuptools instead of whatever PyPI has that day.
RUN uv pip install --python /opt/venv/bin/python --no-deps --no-build-isolation --compile-bytecode /build \
    && rm -rf /build

# Dataflow starts its workers with Beam's boot program (the version must equal apache-beam in the lock).
# Vertex AI sets the container command (python -m tfx...kubeflow_v2_run_executor or tfx.scripts.run_executor),
# which replaces this entrypoint.
COPY --from=apache/beam_python3.10_sdk:2.74.0 /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

RUN useradd --create-home --uid 10001 --user-group recsys
USER 10001:10001
WORKDIR /home/recsys
# Vertex AI and Dataflow ignore HEALTHCHECK; this one answers for `docker run`. Importing TensorFlow here
# would cost 30 s and 1 GB per check, so it checks that our package and the interpreter are in place.
HEALTHCHECK --interval=5m --timeout=30s CMD ["python", "-c", "import tfx_pipeline, trainer_module, transform"]
