"""A small client of the recommendation API (what `recsys recommend` and the demo use)."""

import time

import httpx


class ApiError(Exception):
    """The API answered with an error (its message) or could not be reached."""


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 5.0, api_key: str | None = None):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"X-API-Key": api_key} if api_key else None,
        )

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ApiError(f"{self._http.base_url}: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise ApiError(f"HTTP {response.status_code}: {response.json().get('error', response.text)}")
        return response.json()

    def wait_ready(self, seconds: float):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self._call("GET", "/readyz")
            except ApiError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def recommend(self, user_id: str, k: int = 10, **options) -> dict:
        return self._call(
            "POST", "/recommend", json={"user_id": user_id, "num_recommendations": k, **options}
        )

    def similar(self, item_id: str, k: int = 10) -> dict:
        return self._call("GET", f"/similar/{item_id}", params={"k": k})

    def feedback(self, user_id: str, item_id: str, feedback_type: str, **fields) -> dict:
        return self._call(
            "POST",
            "/feedback",
            json={"user_id": user_id, "item_id": item_id, "feedback_type": feedback_type, **fields},
        )

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
