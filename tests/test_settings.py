"""Settings: precedence explicit > env > file > profile, profiles, the TOML file, ``.env``,
errors reported together, and secrets masked in every output."""

from __future__ import annotations

import json
import string
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcore._limits import RateLimit
from chatcore._settings import (
    ENVIRONMENTS,
    LOG_LEVELS,
    PROFILES,
    LoadedSettings,
    Settings,
    describe,
    is_secret_name,
    layer_provider_options,
    load_settings,
    profile_defaults,
    render_config,
)
from chatcore.exceptions import ConfigurationError
from chatcore.provider import Option, ProviderSpec, Secret, resolve_config

SECRET = "sk-fileSECRETvalue0123456789"


def load(tmp: Path, explicit: dict[str, Any] | None = None, /, **env: str) -> LoadedSettings:
    """Load with an exact environment and ``tmp`` as the working directory."""
    return load_settings(explicit, environ=env, cwd=tmp)


def write(tmp: Path, text: str, name: str = "chatcore.toml") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp: Path, explicit: dict[str, Any] | None = None, /, **env: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(tmp, explicit, **env)
    return str(info.value)


# --- defaults and profiles ---------------------------------------------------------------


def test_nothing_configured_gives_the_dev_profile(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.settings == Settings()
    assert loaded.env == "dev"
    assert loaded.path is None
    assert loaded.file_providers == {}
    assert loaded.sources["env"] == "default"
    assert loaded.sources["max_retries"] == "profile dev"
    assert loaded.settings.max_total_chars == 100_000
    assert loaded.settings.health_host == "127.0.0.1"
    assert loaded.settings.health_port == 8686


@pytest.mark.parametrize(
    ("env", "log_level", "log_json", "timeout_total"),
    [
        ("dev", "DEBUG", False, None),
        ("staging", "INFO", True, 120.0),
        ("prod", "WARNING", True, 120.0),
    ],
)
def test_profiles(
    tmp_path: Path, env: str, log_level: str, log_json: bool, timeout_total: float | None
) -> None:
    s = load(tmp_path, {"env": env}).settings
    assert (s.env, s.log_level, s.log_json, s.timeout_total) == (
        env,
        log_level,
        log_json,
        timeout_total,
    )
    # Profiles never change what chat() returns: retries and caching are the same.
    assert s.max_retries == 2
    assert s.cache is False
    assert load(tmp_path, {"env": env}).sources["log_level"] == f"profile {env}"


def test_every_profile_is_a_valid_settings_object() -> None:
    assert set(PROFILES) == set(ENVIRONMENTS)
    for env in ENVIRONMENTS:
        Settings(**profile_defaults(env))
    with pytest.raises(ConfigurationError, match="did you mean 'prod'"):
        profile_defaults("production")


def test_profile_selection_precedence(tmp_path: Path) -> None:
    write(tmp_path, 'env = "staging"\n')
    assert load(tmp_path).env == "staging"
    assert load(tmp_path).sources["env"] == f"file {tmp_path / 'chatcore.toml'}"
    assert load(tmp_path, CHATCORE_ENV="PROD").env == "prod"
    assert load(tmp_path, CHATCORE_ENV="prod").sources["env"] == "env CHATCORE_ENV"
    loaded = load(tmp_path, {"env": "dev"}, CHATCORE_ENV="prod")
    assert (loaded.env, loaded.sources["env"]) == ("dev", "argument")


# --- precedence --------------------------------------------------------------------------

# key -> (values, how the environment writes one, how TOML writes one)
_LAYERED: dict[str, tuple[st.SearchStrategy[Any], Any, Any]] = {
    "max_retries": (st.integers(0, 50), str, str),
    "timeout_total": (st.integers(1, 1000).map(float), repr, repr),
    "cache": (st.booleans(), lambda v: "yes" if v else "off", lambda v: str(v).lower()),
    "log_level": (st.sampled_from(LOG_LEVELS), str.lower, lambda v: f'"{v}"'),
    "health_port": (st.integers(0, 65535), str, str),
    "readiness_ttl": (st.integers(0, 100).map(float), repr, repr),
    "max_server_hold": (st.integers(1, 86_400).map(float), repr, repr),
}


@settings(max_examples=150, deadline=None)
@given(
    key=st.sampled_from(sorted(_LAYERED)),
    data=st.data(),
    env=st.sampled_from(ENVIRONMENTS),
    present=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_the_highest_layer_present_wins(
    key: str, data: st.DataObject, env: str, present: tuple[bool, bool, bool, bool]
) -> None:
    values, to_env, to_toml = _LAYERED[key]
    arg, var, profile_val, top = (data.draw(values) for _ in range(4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chatcore.toml"
        lines = [f'env = "{env}"']
        if present[3]:
            lines.append(f"{key} = {to_toml(top)}")
        if present[2]:
            lines += [f"[profiles.{env}]", f"{key} = {to_toml(profile_val)}"]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        environ = {f"CHATCORE_{key.upper()}": to_env(var)} if present[1] else {}
        explicit = {key: arg} if present[0] else None
        loaded = load_settings(explicit, environ=environ, cwd=tmp)
    layers = [
        (arg, "argument"),
        (var, f"env CHATCORE_{key.upper()}"),
        (profile_val, f"file {path} [profiles.{env}]"),
        (top, f"file {path}"),
    ]
    expected = next(
        (layer for layer, on in zip(layers, present) if on),
        (profile_defaults(env)[key], f"profile {env}"),
    )
    assert (getattr(loaded.settings, key), loaded.sources[key]) == expected


def test_none_is_not_given_and_the_word_none_unsets(tmp_path: Path) -> None:
    write(tmp_path, 'timeout_total = "none"\nlog_level = "off"\n')
    loaded = load(tmp_path, {"env": "prod", "timeout_total": None, "log_level": None})
    assert loaded.settings.timeout_total is None
    assert loaded.settings.log_level is None
    assert load(tmp_path, {"env": "prod"}, CHATCORE_TIMEOUT_TOTAL="30").settings.timeout_total == (
        30.0
    )
    assert load(tmp_path, {"cache_ttl": "none"}).settings.cache_ttl is None
    # An empty variable counts as unset, as for provider options.
    assert load(tmp_path, CHATCORE_MAX_RETRIES="").sources["max_retries"] == "profile dev"


# --- the TOML file -----------------------------------------------------------------------

FILE = f"""
env = "prod"
max_retries = 4
timeout_total = 30
cache = true

[providers.openai]
api_key = "{SECRET}"
timeout = 20

[providers.huggingface]
base_url = "https://example.test"

[rate_limits."openai:gpt-4o"]
rpm = 500
tpm = 200000

[rate_limits.huggingface]
rps = 2

[profiles.prod]
max_retries = 5
log_level = "error"

[profiles.prod.providers.openai]
timeout = 60

[profiles.dev]
max_retries = 0
"""


def test_file_layout(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    loaded = load(tmp_path)
    s = loaded.settings
    assert loaded.path == str(path)
    assert (s.env, s.max_retries, s.timeout_total, s.cache, s.log_level) == (
        "prod",
        5,
        30.0,
        True,
        "ERROR",
    )
    assert isinstance(s.timeout_total, float)
    assert s.rate_limits == {
        "openai:gpt-4o": RateLimit(rpm=500, tpm=200000),
        "huggingface": RateLimit(rps=2),
    }
    assert loaded.sources["max_retries"] == f"file {path} [profiles.prod]"
    assert loaded.sources["timeout_total"] == f"file {path}"
    # Provider options are handed back as the lowest layer, never as settings.
    assert s.providers == {}
    assert loaded.file_providers["openai"]["timeout"] == 60
    assert loaded.file_providers["openai"]["api_key"] == Secret(SECRET)
    assert loaded.file_providers["huggingface"] == {"base_url": "https://example.test"}
    # The dev table applies only under dev.
    assert load(tmp_path, {"env": "dev"}).settings.max_retries == 0


def test_chatcore_config_variable(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", "max_retries = 7\n", name="mine.toml")
    write(tmp_path, "max_retries = 1\n")
    relative = load(tmp_path, CHATCORE_CONFIG="conf/mine.toml")
    assert (relative.path, relative.settings.max_retries) == (str(path), 7)
    assert load(tmp_path, CHATCORE_CONFIG=str(path)).settings.max_retries == 7
    # The argument beats the variable.
    loaded = load_settings(
        environ={"CHATCORE_CONFIG": str(path)},
        cwd=tmp_path,
        config_path=tmp_path / "chatcore.toml",
    )
    assert loaded.settings.max_retries == 1


def test_missing_files(tmp_path: Path) -> None:
    assert load(tmp_path).path is None  # no chatcore.toml: fine
    with pytest.raises(ConfigurationError, match=r"nope\.toml.*config_path argument.*not exist"):
        load_settings(environ={}, cwd=tmp_path, config_path="nope.toml")
    with pytest.raises(ConfigurationError, match=r"gone\.toml.*CHATCORE_CONFIG.*not exist"):
        load(tmp_path, CHATCORE_CONFIG="gone.toml")


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "max_retries = = 3\n")
    assert "could not be read" in error_of(tmp_path)


def test_without_a_toml_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "max_retries = 3\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    assert "pip install tomli" in error_of(tmp_path)


def test_toml_and_dotenv_are_imported_only_when_their_file_exists(tmp_path: Path) -> None:
    code = (
        "import sys; from chatcore._settings import load_settings; "
        f"load_settings(environ={{}}, cwd={str(tmp_path)!r}); "
        "print(sorted(m for m in ('tomllib', 'tomli', 'dotenv') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --- rate limits from the environment ----------------------------------------------------


def test_rate_limits_as_json(tmp_path: Path) -> None:
    write(tmp_path, "[rate_limits.openai]\nrpm = 1\n")
    loaded = load(tmp_path, CHATCORE_RATE_LIMITS='{"openai:gpt-4o": {"rpm": 60, "tpm": 1000}}')
    assert loaded.settings.rate_limits == {"openai:gpt-4o": RateLimit(rpm=60, tpm=1000)}
    assert loaded.sources["rate_limits"] == "env CHATCORE_RATE_LIMITS"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "expected a JSON object"),
        ("[1, 2]", "expected a mapping of 'provider'"),
        ('{"openai": {"rpx": 1}}', "unknown key(s) rpx"),
        ('{"openai": {"rpm": -1}}', "expected a number > 0"),
        ('{":gpt-4o": {"rpm": 1}}', "expected 'provider' or 'provider:model'"),
    ],
)
def test_bad_rate_limits(tmp_path: Path, value: str, message: str) -> None:
    text = error_of(tmp_path, CHATCORE_RATE_LIMITS=value)
    assert message in text
    assert "from env CHATCORE_RATE_LIMITS" in text


# --- errors ------------------------------------------------------------------------------


def test_unknown_keys_get_suggestions(tmp_path: Path) -> None:
    write(
        tmp_path,
        "max_retires = 3\nzzz = 1\n[profiles.prod]\nlog_levle = 'INFO'\nenv = 'dev'\n"
        "[profiles.production]\ncache = true\n",
    )
    text = error_of(tmp_path, {"timeout_totl": 3}, CHATCORE_CAHCE="1")
    assert "timeout_totl=3 (from argument): unknown setting (did you mean 'timeout_total'?)" in text
    assert "max_retires=3" in text
    assert "did you mean 'max_retries'?" in text
    assert "zzz=1" in text
    assert "allowed: budgets, cache, cache_maxsize" in text  # no near miss: all are listed
    assert "profiles.prod.log_levle='INFO'" in text
    assert "did you mean 'log_level'?" in text
    assert "profiles.prod.env='dev'" in text
    assert "not allowed in a profile" in text
    assert "[profiles.production]" in text
    assert "did you mean 'prod'?" in text
    assert "CHATCORE_CAHCE='1' (from environment)" in text
    assert "did you mean CHATCORE_CACHE?" in text
    assert text.startswith("invalid chatcore settings (7 problems):")


def test_provider_variables_are_not_taken_for_settings(tmp_path: Path) -> None:
    environ = {
        "CHATCORE_OPENAI_API_KEY": "sk-x",
        "CHATCORE_OPENAI_TIMEOUT": "30",
        "CHATCORE_HUGGINGFACE_BASE_URL": "http://x",
        "CHATCORE_AZURE_API_VERSION": "2024-10-21",
        "CHATCORE_MY_PROVIDER_MAX_RETRIES": "3",
        "CHATCORE_STRICT_PLUGINS": "1",
        "CHATCORE_DISABLE_PLUGINS": "a,b",
        "CHATCORE_ENV": "dev",
        "OPENAI_API_KEY": "sk-y",
    }
    assert load(tmp_path, **environ).env == "dev"
    # A provider named like a near miss is known once it is configured or named.
    load_settings(environ={"CHATCORE_CACHES_X": "1"}, cwd=tmp_path, provider_names=["caches"])
    with pytest.raises(ConfigurationError, match="did you mean CHATCORE_STRICT_PLUGINS"):
        load(tmp_path, CHATCORE_STRICT_PLUGIN="1")
    with pytest.raises(ConfigurationError, match="CHATCORE_OPENAI_TIMEOUT=30"):
        load(tmp_path, CHATCORE_PROVIDERS='{"openai": {}}')


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("env", "qa", "one of 'dev', 'staging', 'prod'"),
        ("max_retries", -1, "an integer >= 0"),
        ("max_retries", True, "an integer >= 0"),
        ("max_retries", 1.5, "an integer >= 0"),
        ("max_retries", "3", "an integer >= 0"),
        ("timeout_total", 0, "a number > 0"),
        ("timeout_total", float("nan"), "finite"),
        ("max_retry_after", -5.0, "a number > 0"),
        ("max_server_hold", 0, "a number of seconds > 0"),
        ("max_server_hold", -1.0, "a number of seconds > 0"),
        ("max_server_hold", float("inf"), "finite"),
        ("max_server_hold", "60", "a number of seconds > 0"),
        ("max_server_hold", 86400.5, "at most 86400"),
        ("cache", "yes", "true or false"),
        ("cache_ttl", 0.0, "a number > 0"),
        ("cache_maxsize", 0, "an integer >= 1"),
        ("rate_limits", [1], "a mapping of 'provider'"),
        ("max_total_chars", 0, "an integer >= 1"),
        ("max_request_bytes", -1, "an integer >= 1"),
        ("max_messages", 0, "an integer >= 1"),
        ("log_level", "VERBOSE", "one of TRACE, DEBUG"),
        ("log_json", 1, "true or false"),
        ("health_host", "", "a host name"),
        ("health_port", 65536, "from 0 to 65535"),
        ("readiness_ttl", -1, "a number >= 0"),
        ("providers", "openai", "a mapping of provider name"),
    ],
)
def test_types_and_ranges(tmp_path: Path, key: str, value: Any, allowed: str) -> None:
    text = error_of(tmp_path, {key: value})
    assert f"{key}=" in text
    assert "(from argument)" in text
    assert allowed in text


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("CHATCORE_MAX_RETRIES", "three", "an integer >= 0"),
        ("CHATCORE_MAX_RETRIES", "2.5", "an integer >= 0"),
        ("CHATCORE_TIMEOUT_TOTAL", "-3", "a number > 0"),
        ("CHATCORE_CACHE", "maybe", "1/true/yes/on"),
        ("CHATCORE_ENV", "production", "did you mean 'prod'?"),
        ("CHATCORE_LOG_LEVEL", "loud", "one of TRACE"),
        ("CHATCORE_HEALTH_PORT", "-1", "from 0 to 65535"),
    ],
)
def test_environment_values_are_parsed_and_checked(
    tmp_path: Path, var: str, value: str, allowed: str
) -> None:
    text = error_of(tmp_path, **{var: value})
    assert f"(from env {var})" in text
    assert allowed in text


def test_environment_text_is_converted(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        CHATCORE_MAX_RETRIES=" 5 ",
        CHATCORE_TIMEOUT_TOTAL="2.5",
        CHATCORE_CACHE="on",
        CHATCORE_LOG_LEVEL="success",
        CHATCORE_LOG_JSON="0",
        CHATCORE_HEALTH_HOST="0.0.0.0",
        CHATCORE_READINESS_TTL="3",
    ).settings
    assert (s.max_retries, s.timeout_total, s.cache, s.log_level, s.log_json) == (
        5,
        2.5,
        True,
        "SUCCESS",
        False,
    )
    assert (s.health_host, s.readiness_ttl) == ("0.0.0.0", 3.0)


def test_every_problem_of_every_layer_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, 'max_retries = -2\ncache = "sure"\n[providers]\nopenai = 3\n')
    text = error_of(
        tmp_path,
        {"health_port": "80", "bogus": 1},
        CHATCORE_TIMEOUT_TOTAL="soon",
        CHATCORE_MAX_RETRIES="1",  # overrides the file's bad value, which is still reported
    )
    assert text.startswith("invalid chatcore settings (6 problems):")
    for fragment in (
        "max_retries=-2 (from file",
        "cache='sure' (from file",
        "providers.openai=3 (from file",
        "health_port='80' (from argument)",
        "bogus=1 (from argument)",
        "timeout_total='soon' (from env CHATCORE_TIMEOUT_TOTAL)",
    ):
        assert fragment in text


def test_settings_validate_when_built_directly() -> None:
    with pytest.raises(ValueError, match="max_retries=-1"):
        Settings(max_retries=-1)
    with pytest.raises(ValueError, match="env='qa'"):
        Settings(env="qa")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Settings().max_retries = 3  # type: ignore[misc]


# --- secrets -----------------------------------------------------------------------------


def test_secret_names() -> None:
    for name in ("api_key", "ad_token", "client_secret", "password", "KEY", "credentials"):
        assert is_secret_name(name)
    for name in ("base_url", "timeout", "organization"):
        assert not is_secret_name(name)


def test_secrets_are_masked_in_every_output(tmp_path: Path) -> None:
    write(tmp_path, FILE)
    loaded = load_settings(
        {"providers": {"azure": {"ad_token": "argSECRETtoken123", "endpoint": "https://a"}}},
        environ={"CHATCORE_OPENAI_ORG_KEY": "envSECRET456789"},
        cwd=tmp_path,
    )
    rows = {key: (value, source) for key, value, source in describe(loaded)}
    assert rows["providers.openai.api_key"] == ("***", f"file {tmp_path / 'chatcore.toml'}")
    assert rows["providers.azure.ad_token"] == ("***", "argument")
    assert rows["providers.azure.endpoint"] == ("https://a", "argument")
    outputs = [
        render_config(loaded),
        render_config(loaded, json=True),
        repr(loaded),
        repr(loaded.settings),
        str(describe(loaded)),
    ]
    for out in outputs:
        for secret in (SECRET, "argSECRETtoken123", "envSECRET456789"):
            assert secret not in out
    # The explicit providers are passed on untouched.
    assert loaded.settings.providers["azure"]["ad_token"] == "argSECRETtoken123"


# Realistic secrets: a vendor-like prefix and at least 16 random characters (a 10-letter
# "secret" such as "health_hos" can occur in any output by chance).
_SECRETS = st.text(alphabet=string.ascii_letters + string.digits, min_size=16).map(
    lambda s: "sk-" + s
)


@settings(max_examples=60, deadline=None)
@given(secret=_SECRETS)
def test_a_file_secret_never_appears_in_output(secret: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), f'[providers.openai]\napi_key = "{secret}"\nbase_url = "http://x"\n')
        loaded = load_settings(environ={}, cwd=tmp)
        assert secret not in render_config(loaded)
        assert secret not in render_config(loaded, json=True)
        assert secret not in repr(loaded)
        # The same secret pasted in wrong places, next to the right one, in the error too.
        write(
            Path(tmp),
            f'max_retries = "{secret}"\n{secret} = 1\nhealth_host = 3\n'
            f'[providers]\nhf_token = "{secret}"\n'
            f'[providers.openai]\napi_key = "{secret}"\n'
            f'[rate_limits.openai]\nrpm = "{secret}"\n',
        )
        with pytest.raises(ConfigurationError) as info:
            load_settings({"log_level": secret}, environ={"CHATCORE_ENV": secret}, cwd=tmp)
    assert secret not in str(info.value)
    assert "***" in str(info.value)


def test_render_config_table_and_json(tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    loaded = load(tmp_path, CHATCORE_OPENAI_TIMEOUT="5")
    table = render_config(loaded)
    lines = table.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert f"config_file                {path}" in table or str(path) in lines[2]
    assert any(line.split()[:2] == ["max_retries", "5"] for line in lines)
    assert "rpm=500, tpm=200000" in table
    assert any(
        line.split() == ["providers.openai.timeout", "5", "env", "CHATCORE_OPENAI_TIMEOUT"]
        for line in lines
    )
    data = json.loads(render_config(loaded, json=True))
    assert data["config_file"] == str(path)
    assert data["settings"]["max_retries"] == {
        "value": 5,
        "source": f"file {path} [profiles.prod]",
    }
    assert data["settings"]["rate_limits"]["value"]["openai:gpt-4o"] == {"rpm": 500, "tpm": 200000}
    assert data["settings"]["timeout_total"]["value"] == 30.0
    assert data["providers"]["openai"]["api_key"]["value"] == "***"


# --- providers: the file is the lowest layer ---------------------------------------------


def _spec() -> ProviderSpec:
    return ProviderSpec(
        name="openai",
        factory=lambda config: None,  # type: ignore[arg-type,return-value]
        options={
            "api_key": Option(secret=True, env=("OPENAI_API_KEY",)),
            "organization": Option(env=("OPENAI_ORG_ID",)),
        },
    )


def test_file_provider_options_are_the_lowest_layer(tmp_path: Path) -> None:
    write(
        tmp_path,
        f'[providers.openai]\napi_key = "{SECRET}"\ntimeout = 20\n'
        'organization = "org-file"\npool_maxsize = 4\n',
    )
    spec = _spec()
    environ = {"OPENAI_API_KEY": "sk-envKEY0123456789", "CHATCORE_OPENAI_TIMEOUT": "30"}
    loaded = load_settings(
        {"providers": {"openai": {"pool_maxsize": 8, "organization": None}}},
        environ=environ,
        cwd=tmp_path,
    )
    merged = loaded.provider_options(spec)
    assert merged == {"pool_maxsize": 8, "organization": "org-file"}
    config = resolve_config(spec, merged, loaded.environ)
    assert config["api_key"] == "sk-envKEY0123456789"  # vendor variable beats the file
    assert config["timeout"] == 30.0  # CHATCORE_<P>_<O> beats the file
    assert config["organization"] == "org-file"  # explicit None: not given
    assert config["pool_maxsize"] == 8  # argument beats the file
    # With no environment, the file's secret reaches the provider (unwrapped).
    alone = load_settings(environ={}, cwd=tmp_path)
    assert resolve_config(spec, alone.provider_options(spec), {})["api_key"] == SECRET
    # Unknown file options are passed on so resolve_config names them.
    merged = layer_provider_options(spec, None, {"bogus": 1}, {})
    with pytest.raises(ConfigurationError, match="unknown option 'bogus'"):
        resolve_config(spec, merged, {})


def test_describe_with_specs_shows_vendor_variables(tmp_path: Path) -> None:
    write(tmp_path, f'[providers.openai]\napi_key = "{SECRET}"\n')
    loaded = load(tmp_path, OPENAI_API_KEY="sk-envKEY0123456789")
    rows = {k: (v, s) for k, v, s in describe(loaded, specs={"openai": _spec()})}
    assert rows["providers.openai.api_key"] == ("***", "env OPENAI_API_KEY")
    # Without specs, only chatcore's own variables are known.
    rows = {k: (v, s) for k, v, s in describe(loaded)}
    assert rows["providers.openai.api_key"][1].startswith("file ")


# --- .env --------------------------------------------------------------------------------

DOTENV = "OPENAI_API_KEY=sk-fromDOTENV0123456789\nCHATCORE_MAX_RETRIES=6\nCHATCORE_CACHE=1\n"


def _check_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(DOTENV, encoding="utf-8")
    loaded = load(tmp_path, CHATCORE_MAX_RETRIES="3", HOME="/home/x")
    assert loaded.settings.max_retries == 3  # the real environment wins
    assert loaded.settings.cache is True
    assert loaded.sources["cache"] == "env CHATCORE_CACHE"
    assert loaded.environ["OPENAI_API_KEY"] == "sk-fromDOTENV0123456789"
    assert loaded.environ["CHATCORE_MAX_RETRIES"] == "3"
    assert loaded.environ["HOME"] == "/home/x"
    assert sorted(loaded.environ) == [
        "CHATCORE_CACHE",
        "CHATCORE_MAX_RETRIES",
        "HOME",
        "OPENAI_API_KEY",
    ]
    assert len(loaded.environ) == 4
    assert "sk-fromDOTENV" not in repr(loaded)
    assert load_settings(environ={}, cwd=tmp_path, dotenv=False).settings.cache is False


def test_dotenv_with_python_dotenv(tmp_path: Path) -> None:
    pytest.importorskip("dotenv")
    _check_dotenv(tmp_path)


def test_dotenv_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The merge itself, with a minimal stand-in for python-dotenv's ``dotenv_values``."""

    def dotenv_values(path: Path) -> dict[str, str | None]:
        values: dict[str, str | None] = {"UNSET": None}
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = value
        return values

    fake = types.ModuleType("dotenv")
    fake.dotenv_values = dotenv_values  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dotenv", fake)
    _check_dotenv(tmp_path)


def test_dotenv_is_ignored_without_python_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dotenv", None)
    (tmp_path / ".env").write_text(DOTENV, encoding="utf-8")
    loaded = load(tmp_path)
    assert loaded.settings.max_retries == 2
    assert "OPENAI_API_KEY" not in loaded.environ


def test_vendor_secrets_are_masked_in_errors(tmp_path: Path) -> None:
    text = error_of(
        tmp_path, {"log_level": "pastedVendorKEY123"}, OPENAI_API_KEY="pastedVendorKEY123"
    )
    assert "pastedVendorKEY123" not in text
    assert "log_level='***' (from argument)" in text


def test_the_process_environment_and_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "max_retries = 9\ncache = true\n")
    monkeypatch.setenv("CHATCORE_MAX_RETRIES", "4")
    loaded = load_settings()
    assert (loaded.settings.max_retries, loaded.settings.cache) == (4, True)
    assert loaded.path == str(tmp_path / "chatcore.toml")


# --- max_server_hold (issue 11) ----------------------------------------------------------


def test_max_server_hold_defaults_to_max_retry_after_in_every_profile(tmp_path: Path) -> None:
    for env in ENVIRONMENTS:
        s = load(tmp_path, {"env": env}).settings
        assert s.max_server_hold == s.max_retry_after == 120.0
    assert Settings().max_server_hold == 120.0


def test_max_server_hold_from_every_layer(tmp_path: Path) -> None:
    assert load(tmp_path, {"max_server_hold": 30}).settings.max_server_hold == 30.0
    loaded = load(tmp_path, CHATCORE_MAX_SERVER_HOLD=" 45.5 ")
    assert loaded.settings.max_server_hold == 45.5
    assert loaded.sources["max_server_hold"] == "env CHATCORE_MAX_SERVER_HOLD"
    write(tmp_path, 'env = "prod"\nmax_server_hold = 60\n[profiles.prod]\nmax_server_hold = 15\n')
    loaded = load(tmp_path)
    assert loaded.settings.max_server_hold == 15.0
    assert loaded.sources["max_server_hold"].endswith("[profiles.prod]")
    assert load(tmp_path, {"env": "dev"}).settings.max_server_hold == 60.0
    rows = {key: value for key, value, _source in describe(load(tmp_path))}
    assert rows["max_server_hold"] == "15.0"
    shown = json.loads(render_config(load(tmp_path), json=True))
    assert shown["settings"]["max_server_hold"]["value"] == 15.0


@pytest.mark.parametrize("text", ["0", "-3", "inf", "nan", "soon", "1e400", "86401"])
def test_bad_max_server_hold_in_the_environment(tmp_path: Path, text: str) -> None:
    message = error_of(tmp_path, CHATCORE_MAX_SERVER_HOLD=text)
    assert "max_server_hold=" in message or "CHATCORE_MAX_SERVER_HOLD" in message
    assert "a number of seconds > 0" in message
