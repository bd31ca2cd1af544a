"""The public REST surface, read from the google.api.http options compiled into the chirp
descriptors: no hand-written route table. A Router matches a method and a raw path to a Route
and its path bindings, as Envoy's grpc_json_transcoder does with the same descriptors."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

log = logging.getLogger("chirp.gateway")

HTTP_VERBS = ("get", "put", "post", "delete", "patch")
_SINGLE_SEGMENT = "[^/]+"
_MULTI_SEGMENT = ".*"


class TemplateError(ValueError):
    """A google.api.http path template we cannot parse."""


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template such as /users/{user_id}/tweets. `variables` are field paths in group order."""

    text: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    multi_segment: frozenset[str]
    literal_count: int

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise TemplateError(f"{text!r}: a template starts with '/'")
        body, verb = _split_verb(text[1:])
        variables: list[str] = []
        multi: set[str] = set()
        literals = 0
        parts: list[str] = []
        for segment in _split_segments(body, text):
            if segment.startswith("{"):
                if not segment.endswith("}"):
                    raise TemplateError(f"{text!r}: unclosed variable {segment!r}")
                field_path, _, sub = segment[1:-1].partition("=")
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", field_path):
                    raise TemplateError(f"{text!r}: bad field path {field_path!r}")
                sub_regex, sub_literals = _segments_regex(_split_segments(sub or "*", text), text)
                literals += sub_literals
                if "/" in sub_regex or _MULTI_SEGMENT in sub_regex:
                    multi.add(field_path)
                parts.append(f"(?P<v{len(variables)}>{sub_regex})")
                variables.append(field_path)
            else:
                regex, count = _segments_regex([segment], text)
                literals += count
                parts.append(regex)
        regex = "/" + "/".join(parts) + (":" + re.escape(verb) if verb else "")
        return cls(text, re.compile(regex), tuple(variables), frozenset(multi), literals)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """The decoded variable values when `raw_path` (still percent-encoded) fits, else None."""
        found = self.pattern.fullmatch(raw_path)
        if found is None:
            return None
        bindings: dict[str, str] = {}
        for index, field_path in enumerate(self.variables):
            raw = found.group(f"v{index}")
            if field_path in self.multi_segment:
                # A multi-segment value keeps an encoded '/' encoded (the google.api.http rule).
                raw = re.sub("%2[fF]", "%252F", raw)
            bindings[field_path] = unquote(raw)
        return bindings


def _split_verb(body: str) -> tuple[str, str]:
    colon = body.rfind(":")
    if colon > body.rfind("/") and colon > body.rfind("}"):
        return body[:colon], body[colon + 1 :]
    return body, ""


def _split_segments(body: str, text: str) -> list[str]:
    segments: list[str] = []
    depth = 0
    current = ""
    for char in body:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "/" and depth == 0:
            segments.append(current)
            current = ""
        else:
            current += char
    segments.append(current)
    if depth != 0 or any(not s for s in segments):
        raise TemplateError(f"{text!r}: empty segment or unbalanced braces")
    return segments


def _segments_regex(segments: Sequence[str], text: str) -> tuple[str, int]:
    parts: list[str] = []
    literals = 0
    for index, segment in enumerate(segments):
        if segment == "*":
            parts.append(_SINGLE_SEGMENT)
        elif segment == "**":
            if index != len(segments) - 1:
                raise TemplateError(f"{text!r}: '**' must be the last segment")
            parts.append(_MULTI_SEGMENT)
        elif re.fullmatch(r"[^{}*=:]+", segment):
            parts.append(re.escape(segment))
            literals += 1
        else:
            raise TemplateError(f"{text!r}: bad segment {segment!r}")
    return "/".join(parts), literals


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    verb: str  # upper case: GET, POST, ...
    template: PathTemplate
    service: str  # full name, e.g. chirp.tweets.v1.TweetService
    rpc: str  # the gRPC method path, e.g. /chirp.tweets.v1.TweetService/CreateTweet
    request_type: type[Message]
    response_type: type[Message]
    body: str  # "", "*" or a field name
    response_body: str  # "" or a field name
    server_streaming: bool


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    bindings: Mapping[str, str]


class NoRoute(LookupError):
    """No template fits the path."""


class WrongMethod(LookupError):
    """A template fits the path, but not with this HTTP method."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = tuple(allowed)


def chirp_modules(package: str = "chirp") -> list[ModuleType]:
    """Every generated *_pb2 module under the chirp package."""
    root = importlib.import_module(package)
    modules = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("_pb2"):
            modules.append(importlib.import_module(info.name))
    return modules


def chirp_services(modules: Iterable[ModuleType] | None = None) -> list[ServiceDescriptor]:
    services: list[ServiceDescriptor] = []
    for module in chirp_modules() if modules is None else modules:
        services.extend(module.DESCRIPTOR.services_by_name.values())
    return services


def build_routes(services: Iterable[ServiceDescriptor]) -> list[Route]:
    """One Route per http rule (and additional binding) of every method that has one."""
    routes: list[Route] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming:
                log.warning("%s.%s: client streaming is not transcoded", service.full_name, method.name)
                continue
            rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
            for binding in (rule, *rule.additional_bindings):
                verb, path = _verb_and_path(binding)
                routes.append(
                    Route(
                        verb=verb,
                        template=PathTemplate.parse(path),
                        service=service.full_name,
                        rpc=f"/{service.full_name}/{method.name}",
                        request_type=message_factory.GetMessageClass(method.input_type),
                        response_type=message_factory.GetMessageClass(method.output_type),
                        body=binding.body,
                        response_body=binding.response_body,
                        server_streaming=method.server_streaming,
                    )
                )
    return routes


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    if pattern in HTTP_VERBS:
        path: str = getattr(rule, pattern)
        return pattern.upper(), path
    raise TemplateError(f"http rule without a pattern: {rule}")


class Router:
    """Matches requests to routes; with several fitting templates, the one with more literal
    segments wins (so /users/me would beat /users/{user_id})."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: -r.template.literal_count)

    def match(self, verb: str, raw_path: str) -> RouteMatch:
        allowed: list[str] = []
        for route in self.routes:
            bindings = route.template.match(raw_path)
            if bindings is None:
                continue
            if route.verb == verb:
                return RouteMatch(route, bindings)
            if route.verb not in allowed:
                allowed.append(route.verb)
        if allowed:
            raise WrongMethod(allowed)
        raise NoRoute(raw_path)
