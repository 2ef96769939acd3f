"""Where pushed models live, shared by the Pusher, the cloud config and the manifests' checks.

<base>/<version>/          the brute-force SavedModel (stock TF Serving, the embedded backend), with scann/ inside
<base>-scann/<version>/    the ScaNN SavedModel as a version root of its own: what TF Serving built with the
                           ScaNN ops serves (TF Serving loads only version roots)
"""

SCANN_SUFFIX = "-scann"


def scann_base(base: str) -> str:
    return base.rstrip("/") + SCANN_SUFFIX
