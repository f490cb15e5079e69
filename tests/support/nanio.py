"""Runs a real nanio S3 server (it verifies SigV4 signatures and expiry) on a free loopback port."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NanioServer:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    data_dir: Path
    process: subprocess.Popen | None = None
    port: int = 0

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def start(self):
        env = dict(os.environ, NANIO_ACCESS_KEY=self.access_key, NANIO_SECRET_KEY=self.secret_key)
        nanio = Path(sys.executable).with_name("nanio")
        self.process = subprocess.Popen(
            [
                str(nanio),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--region",
                self.region,
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("nanio exited at start") from None
                time.sleep(0.05)
        raise RuntimeError("nanio did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nanio(bucket="portal-test"):
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="nanio-"))
    server = NanioServer(
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key="portaltestkey",
        secret_key="portal-test-secret-0123456789",
        region="us-east-1",
        bucket=bucket,
        data_dir=data_dir,
        port=port,
    ).start()
    server.client().create_bucket(Bucket=bucket)
    return server


def stop_nanio(server):
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)
