# TensorFlow Serving 2.16.1 (the release for TensorFlow 2.16) built from source with the ScaNN ops linked in.
#   docker build -f docker/tf-serving-scann.Dockerfile --build-arg SCANN_COMMIT=<google-research commit> \
#     -t <registry>/tf-serving-scann:2.16.1 .
#
# Followed: google-research/google-research, scann/tf_serving/Dockerfile.devel and scann/tf_serving/patches/.
# Start from TF Serving's devel image (its sources are in /tensorflow-serving), apply the ScaNN project's
# serving.patch (adds the Bazel repository @com_google_scann, itself patched by patches/scann/tf_serving.patch,
# and links @com_google_scann//scann/scann_ops/cc:scann_ops_static into SUPPORTED_TENSORFLOW_OPS, as TF
# Serving's custom-op guide describes), then build the model server with AVX2 and FMA, which ScaNN needs.
# SCANN_COMMIT has no default on purpose: pick the commit whose patches apply to TF Serving 2.16.1 and whose
# ScaNN builds against TensorFlow 2.16 (the sources of the scann 1.3.2 release); nothing here has built it yet.
#
# Fallback: the stock tensorflow/serving:2.16.1 image serves the same k8s/ config unchanged, because the root
# of every pushed version is the brute-force SavedModel, which uses no ScaNN ops.
ARG TF_SERVING_VERSION=2.16.1

FROM tensorflow/serving:${TF_SERVING_VERSION}-devel AS build
ARG SCANN_COMMIT
ARG TF_SERVING_BUILD_OPTIONS="--config=release --copt=-mavx2 --copt=-mfma"
WORKDIR /tensorflow-serving
RUN test -n "${SCANN_COMMIT}" || { echo "--build-arg SCANN_COMMIT=<google-research commit> is required"; exit 1; }
RUN mkdir /scann \
    && curl -sSL --retry 5 "https://github.com/google-research/google-research/tarball/${SCANN_COMMIT}" \
        | tar --strip-components=1 -xzf - -C /scann \
    && mv /scann/scann/tf_serving/patches/scann third_party/scann \
    && git apply /scann/scann/tf_serving/patches/serving.patch \
    && rm -rf /scann
RUN bazel build --color=no --curses=no --verbose_failures ${TF_SERVING_BUILD_OPTIONS} \
        tensorflow_serving/model_servers:tensorflow_model_server \
    && cp bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server /usr/local/bin/

# TF Serving's Dockerfile.devel (Bazel 6.5.0, as for TensorFlow 2.16) starts from Ubuntu 22.04: the same release
# here gives the binary the glibc and libstdc++ it was built against.
FROM ubuntu:22.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home tfserving
COPY --from=build /usr/local/bin/tensorflow_model_server /usr/bin/tensorflow_model_server
ENV MODEL_NAME=recsys
USER 10001:10001
EXPOSE 8500 8501
# The model config and the monitoring config are mounted at /etc/tf-serving (k8s/kustomization.yaml's ConfigMap).
ENTRYPOINT ["/usr/bin/tensorflow_model_server"]
CMD ["--port=8500", "--rest_api_port=8501", "--model_config_file=/etc/tf-serving/models.config", \
     "--monitoring_config_file=/etc/tf-serving/monitoring.config"]
# Healthy once a version serves: the metadata call answers 404 until one is loaded. bash's /dev/tcp instead of
# installing curl in the runtime image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/8501 \
    && printf "GET /v1/models/${MODEL_NAME}/metadata HTTP/1.0\r\n\r\n" >&3 && head -n 1 <&3 | grep -q " 200 "'
