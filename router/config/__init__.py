"""Config: schema, loading (TOML, JSON), validation with path-qualified errors."""

from router.config.load import ValidConfig, format_of, load_bytes, load_config, parse_document, validate_document
from router.config.schema import Config, json_schema
from router.errors import ConfigError

__all__ = ["Config", "ConfigError", "ValidConfig", "format_of", "json_schema", "load_bytes",
           "load_config", "parse_document", "validate_document"]
