"""A real redis-server (Debian's package: `make test` installs it) on 127.0.0.1, a free port and a temporary
directory, configured as the API's shared store must be: an append-only file fsynced before each reply."""

import os
import signal
import socket
import subprocess
import time

import redis

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, directory: str, appendonly: bool = True):
        self.directory, self.port, self.appendonly = directory, free_port(), appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> "RedisServer":
        """Starts the server (again, on the same port and data); returns once it answers."""
        os.makedirs(self.directory, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                self.directory,
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                os.path.join(self.directory, "redis.log"),
            ]
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server did not start; see {self.directory}/redis.log"
                    ) from None
                time.sleep(0.02)
        client.close()
        return self

    def kill(self):
        """SIGKILL: no shutdown work, what it acknowledged must be in its append-only file already."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
