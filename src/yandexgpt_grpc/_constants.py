"""Endpoints, defaults and header names shared by both clients."""

from __future__ import annotations

from typing import Final

from ._version import __version__

DEFAULT_ENDPOINT: Final = "llm.api.cloud.yandex.net:443"
DEFAULT_OPERATION_ENDPOINT: Final = "operation.api.cloud.yandex.net:443"
DEFAULT_IAM_ENDPOINT: Final = "iam.api.cloud.yandex.net:443"

# Generations can run for minutes when streamed; a unary call that takes longer
# than a minute is usually stuck.
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_STREAM_TIMEOUT: Final = 300.0

USER_AGENT: Final = f"yandexgpt-grpc/{__version__}"
# Long conversations and tool schemas can exceed grpc's 4 MiB default.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024

# Environment variables a client falls back on (credentials: see _auth.resolve_credentials).
ENV_API_KEY: Final = "YC_API_KEY"
ENV_IAM_TOKEN: Final = "YC_IAM_TOKEN"
ENV_FOLDER_ID: Final = "YC_FOLDER_ID"
ENV_ENDPOINT: Final = "YANDEXGPT_ENDPOINT"
ENV_METADATA_ADDR: Final = "YC_METADATA_ADDR"

# gRPC metadata keys: sent by the client, then those the server answers with.
HEADER_AUTHORIZATION: Final = "authorization"
HEADER_FOLDER_ID: Final = "x-folder-id"
HEADER_CLIENT_REQUEST_ID: Final = "x-client-request-id"
HEADER_DATA_LOGGING: Final = "x-data-logging-enabled"
HEADER_REQUEST_ID: Final = "x-request-id"
HEADER_TRACE_ID: Final = "x-server-trace-id"
HEADER_ATTEMPT: Final = "x-retry-attempt"
HEADER_PUSHBACK: Final = "grpc-retry-pushback-ms"
