import datetime
from typing import Any, Mapping, Optional, Union

from ._native import (
    CacheError as CacheError,
    ConfigurationError as ConfigurationError,
    Internal as Internal,
    InvalidRequest as InvalidRequest,
    InvocationError as InvocationError,
    LocalFile as LocalFile,
    NoData as NoData,
    NotCovered as NotCovered,
    StorageConflict as StorageConflict,
    UpstreamNoPermission as UpstreamNoPermission,
    UpstreamRateLimited as UpstreamRateLimited,
    UpstreamUnavailable as UpstreamUnavailable,
)

Bound = Union[datetime.date, datetime.datetime, str]

def bound_text(value: Bound, name: str = ...) -> str: ...
def request_json(payload: Mapping[str, Any], start: Bound, end: Optional[Bound] = ..., include_after_hours: bool = ...) -> str: ...

class Client:
    @classmethod
    def from_env(cls) -> "Client": ...
    @classmethod
    def embedded(cls, state_dir: Any) -> "Client": ...
    @property
    def mode(self) -> str: ...
    @property
    def cache_root(self) -> Any: ...
    def get(self, payload: Mapping[str, Any], start: Bound, end: Optional[Bound] = ..., include_after_hours: bool = ...) -> LocalFile: ...
    def ensure_local_file(self, path: Any, payload: Optional[Mapping[str, Any]] = ...) -> bool: ...
    def on_local_update(self, path: Any, payload: Optional[Mapping[str, Any]] = ...) -> bool: ...
    def remote_key_for(self, path: Any) -> Optional[str]: ...
    def stats(self) -> dict: ...
