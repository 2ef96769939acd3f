"""The API's settings: the one place their defaults live. Each is read from the environment as RECSYS_<NAME>
(PORT for the port, as Cloud Run sets it), and `recsys serve` options override them."""

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from serving import distances

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", frozen=True)

    model_base: str | None = Field(
        None, description="WORKDIR/serving/<model-name> (or gs://...): where the pipeline pushes versions"
    )
    data: str | None = Field(None, description="data directory to seed user histories from")
    backend: str | None = Field(
        None,
        description="TF Serving: grpc://host:8500 (balanced over every address host resolves to), "
        "dns://dns-server/host:8500, or http://host:8501; default: the model in-process",
    )
    model_name: str | None = Field(
        None, description="TF Serving's model name (default: the last part of the model base)"
    )
    # TF Serving backends: every call names a version label of models.config, "canary" for this share of users
    # (by a hash of the user id, so a user stays on one side) and "stable" for the others. The in-process
    # model is one version and takes no label.
    canary_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="TF Serving: the share of users (0..1, by a hash of their id) whose requests ask for the "
        '"canary" version label, the others "stable"',
    )
    feedback_db: str = Field("feedback.sqlite", description="SQLite file the feedback is stored in")
    bigquery_table: str | None = Field(
        None,
        validation_alias=AliasChoices("bigquery_table", "RECSYS_FEEDBACK_TABLE"),
        description="project.dataset.table to stream feedback to as well (Cloud)",
    )
    store: str | None = Field(
        None,
        description="redis://[:password@]host:port/db (rediss:// for TLS): histories and feedback on a store "
        "every instance shares, feedback delivered to the BigQuery table or else the feedback db; "
        "default: in this process",
    )
    store_timeout: Seconds = Field(
        0.05, description="seconds for a /recommend's read of the shared store, then it answers without"
    )
    reclaim_idle: Seconds = Field(
        30.0,
        description="seconds before another instance delivers events an instance read but did not finish",
    )
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(
        8080, ge=0, le=65535, validation_alias=AliasChoices("port", "PORT"), description="port to listen on"
    )
    timeout: Seconds = Field(2.0, description="seconds allowed for each model call")
    reload_interval: Seconds = Field(5.0, description="seconds between looks for a new version")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="browser origins (https://app.example.com) whose pages may call the API; "
        "in the environment comma-separated",
    )
    api_key: str | None = Field(
        None,
        description="when set, every endpoint but health checks and docs needs it in the X-API-Key header",
    )
    impression_sample: float = Field(
        1.0,
        ge=0,
        le=1,
        description="the share of /recommend answers (0..1, by a hash of the request id) recorded as "
        "impressions for the online metrics",
    )
    # The pipeline's drift thresholds (`recsys pipeline run --drift-...`), for the served traffic's skew from
    # the training data (proxy/skew.py).
    drift_l_infinity: float = Field(
        distances.DEFAULT_THRESHOLDS["l_infinity"],
        gt=0,
        le=1,
        description="skew: the largest L-infinity distance of the served traffic's item and category "
        "distributions from the training data's that is not reported as skew",
    )
    drift_jensen_shannon: float = Field(
        distances.DEFAULT_THRESHOLDS["jensen_shannon"],
        gt=0,
        le=1,
        description="skew: the same for the Jensen-Shannon divergence",
    )
    max_body_bytes: int = Field(1 << 20, ge=1, description="the largest request body accepted")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return tuple(o for o in value.split(",") if o) if isinstance(value, str) else value

    @property
    def skew_thresholds(self) -> dict:
        return {"l_infinity": self.drift_l_infinity, "jensen_shannon": self.drift_jensen_shannon}

    @property
    def version_labels(self) -> bool:
        """TF Serving backends answer by version label; the in-process model has one version."""
        return bool(self.backend)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable a field is read from."""
        alias = cls.model_fields[field].validation_alias
        return alias.choices[-1] if alias else f"RECSYS_{field.upper()}"
