"""Every name this plugin records, in one place.

The ``gen_ai.*``, ``server.*``, ``error.type`` and ``http.*`` names follow the OpenTelemetry
semantic conventions **v1.41.0** (https://opentelemetry.io/schemas/1.41.0), the last
release of ``open-telemetry/semantic-conventions`` that holds the GenAI conventions (from
v1.42.0 they live in ``open-telemetry/semantic-conventions-genai``). They are marked
*Development* (experimental) there: when they change, this module changes, and the
CHANGELOG says so. The ``chatcore.*`` names are chatcore's own.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The semantic conventions version the names below follow, and its schema URL (set on
#: the tracer and the meter).
SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# -- span -----------------------------------------------------------------------------------

#: ``chat {gen_ai.request.model}``, kind CLIENT.
OPERATION_CHAT = "chat"

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
#: Opt-in content (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``): JSON
#: strings in the conventions' message schemas.
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"

# chatcore's own
#: The chatcore provider name (``gen_ai.provider.name`` is the conventions' name for it).
CHATCORE_PROVIDER = "chatcore.provider"
#: Attempts the call took (``0``: answered from chatcore's cache).
CHATCORE_ATTEMPTS = "chatcore.attempts"
#: The answer came from chatcore's response cache (nothing was sent).
CHATCORE_CACHED = "chatcore.cached"
#: The provider's request id (``x-request-id`` and kin), for support tickets.
CHATCORE_REQUEST_ID = "chatcore.request_id"
#: The route deployment that answered (``route:NAME`` models), when the response says.
CHATCORE_DEPLOYMENT = "chatcore.deployment"
#: The call's cost in US dollars, when known (never guessed).
CHATCORE_COST_USD = "chatcore.cost_usd"
#: A stream closed by the caller before its end.
CHATCORE_STREAM_CLOSED_EARLY = "chatcore.stream.closed_early"

#: The span event recorded at the end of each attempt, with the attributes below (and
#: ``error.type`` / ``http.response.status_code`` when it failed).
EVENT_ATTEMPT = "chatcore.attempt"
CHATCORE_ATTEMPT_NUMBER = "chatcore.attempt.number"
CHATCORE_ATTEMPT_DURATION = "chatcore.attempt.duration"

# -- metrics --------------------------------------------------------------------------------

METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"

#: The conventions' bucket advice for the duration and time-to-first-chunk histograms (s).
DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
#: The conventions' bucket advice for the token usage histogram.
TOKEN_BUCKETS: tuple[int, ...] = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

# -- values ---------------------------------------------------------------------------------

#: chatcore provider name -> ``gen_ai.provider.name`` (a well-known value of the
#: conventions where one applies; any other provider is recorded under its chatcore name).
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "huggingface": "huggingface",
}

# -- configuration --------------------------------------------------------------------------

#: The standard switch of OpenTelemetry's GenAI instrumentations: ``true`` records prompts
#: and completions (redacted) as ``gen_ai.input.messages`` / ``gen_ai.output.messages``.
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: ``true`` sends the call's trace context (``traceparent``, the configured propagators)
#: to the provider, for self-hosted servers that trace too.
ENV_PROPAGATE = "CHATCORE_OTEL_PROPAGATE_CONTEXT"


def provider_name(chatcore_name: str) -> str:
    """The ``gen_ai.provider.name`` of a chatcore provider."""
    return PROVIDER_NAMES.get(chatcore_name, chatcore_name)
