"""The public REST surface as the contracts declare it: one HttpRoute per google.api.http rule
(and additional binding) of every RPC in the chirp descriptors. Envoy's transcoder reads the
same rules from the descriptor set; this module turns them into the route table Envoy matches
first (edge_proxy.envoy_config), and into the descriptor set itself."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

HTTP_VERBS = ("get", "put", "post", "delete", "patch")
# Error details the transcoder must find in the descriptor set to print a rich status as JSON.
ERROR_DETAIL_MODULES = ("google.rpc.error_details_pb2", "google.rpc.status_pb2")


class TemplateError(ValueError):
    """A google.api.http path template we cannot turn into a route."""


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP binding of one RPC: `verb` GET/POST/..., `regex` matches the raw request path."""

    verb: str
    template: str
    regex: str
    service: str  # chirp.tweets.v1.TweetService
    method: str  # CreateTweet
    server_streaming: bool
    literal_segments: int

    @property
    def rpc(self) -> str:
        """The gRPC path: /chirp.tweets.v1.TweetService/CreateTweet."""
        return f"/{self.service}/{self.method}"


def chirp_modules(package: str = "chirp") -> list[ModuleType]:
    """Every generated *_pb2 module under the chirp package."""
    root = importlib.import_module(package)
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
        if info.name.endswith("_pb2")
    ]


def chirp_services(modules: Iterable[ModuleType] | None = None) -> list[ServiceDescriptor]:
    return [
        service
        for module in (chirp_modules() if modules is None else modules)
        for service in module.DESCRIPTOR.services_by_name.values()
    ]


def http_routes(services: Iterable[ServiceDescriptor] | None = None) -> list[HttpRoute]:
    """Every HTTP binding, the most specific first (more literal segments win, as /users/me would
    over /users/{user_id}); ties keep the contracts' order."""
    routes: list[HttpRoute] = []
    for service in chirp_services() if services is None else services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming:
                raise TemplateError(f"{service.full_name}.{method.name}: client streaming has no REST form")
            rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
            for binding in (rule, *rule.additional_bindings):
                verb, template = _verb_and_template(binding)
                regex, literals = template_regex(template)
                routes.append(
                    HttpRoute(
                        verb,
                        template,
                        regex,
                        service.full_name,
                        method.name,
                        method.server_streaming,
                        literals,
                    )
                )
    return sorted(routes, key=lambda r: -r.literal_segments)


def template_regex(template: str) -> tuple[str, int]:
    """(RE2 regex of the raw path, number of literal segments) of a google.api.http template."""
    if not template.startswith("/"):
        raise TemplateError(f"{template!r}: a template starts with '/'")
    if ":" in template.rsplit("/", 1)[-1].split("}")[-1]:
        raise TemplateError(f"{template!r}: custom verbs are not used by Chirp")
    parts: list[str] = []
    literals = 0
    for segment in template[1:].split("/"):
        if re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_.]*\}", segment):
            parts.append("[^/]+")
        elif re.fullmatch(r"[A-Za-z0-9_.~-]+", segment):
            parts.append(re.escape(segment))
            literals += 1
        else:
            raise TemplateError(f"{template!r}: unsupported segment {segment!r}")
    return "/" + "/".join(parts), literals


def _verb_and_template(rule: http_pb2.HttpRule) -> tuple[str, str]:
    pattern = rule.WhichOneof("pattern")
    if pattern in HTTP_VERBS:
        path: str = getattr(rule, pattern)
        return pattern.upper(), path
    raise TemplateError(f"unsupported http rule: {rule}")


def descriptor_set(modules: Sequence[ModuleType] | None = None) -> bytes:
    """A serialized FileDescriptorSet of the chirp contracts and everything they import, plus the
    google.rpc error details: what Envoy's grpc_json_transcoder loads (proto_descriptor)."""
    files: dict[str, FileDescriptor] = {}

    def add(file: FileDescriptor) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        files[file.name] = file

    for module in chirp_modules() if modules is None else modules:
        add(module.DESCRIPTOR)
    for name in ERROR_DETAIL_MODULES:
        add(importlib.import_module(name).DESCRIPTOR)
    result = descriptor_pb2.FileDescriptorSet()
    for file in files.values():
        file.CopyToProto(result.file.add())
    return result.SerializeToString()
