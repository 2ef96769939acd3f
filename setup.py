from setuptools import find_packages, setup

setup(
    name="recsys",
    version="0.1.0",
    description="Two-tower recommendations on TFX: interactions to a ScaNN-indexed model and an API",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=[
            "tfx_pipeline",
            "tfx_pipeline.*",
            "transform",
            "transform.*",
            "trainer_module",
            "trainer_module.*",
            "proxy",
            "proxy.*",
            "serving",
            "serving.*",
            "cli",
            "cli.*",
        ]
    ),
    py_modules=["contract", "evaluation", "tensorflow_env"],  # setuptools skips those absent (the API image)
    package_data={"proxy": ["static/*"]},  # the web page's files, served by the API
    # Exact versions come from requirements.lock (make venv); these are the direct needs.
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-recommenders==0.7.7",
        "scann==1.3.2",
        "tensorflow-serving-api==2.16.1",
        "apache-beam[gcp]==2.74.0",
        "dill",
        "duckdb",
        "pyarrow",
        "google-cloud-bigquery",
        "fastapi",
        "pydantic-settings",
        "uvicorn[standard]",
        "httpx",
        "prometheus-client",
    ],
    entry_points={"console_scripts": ["recsys=cli.main:main"]},
)
