"""Configuration: dataclass schema, YAML layers, dotted overrides."""
from .loader import build_config, from_dict, to_dict, read_yaml, PRESET_DIR
from .schema import CacheConfig, DataConfig, OptimConfig, RunConfig

__all__ = ["build_config", "from_dict", "to_dict", "read_yaml", "PRESET_DIR",
           "RunConfig", "DataConfig", "OptimConfig", "CacheConfig"]
