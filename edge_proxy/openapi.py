"""The OpenAPI 3.1 document of the public REST API, generated from the contracts: one operation per
google.api.http binding, schemas from the protobuf messages as Envoy's grpc_json_transcoder prints
and parses them (proto3 JSON with the proto field names; default values are not printed, so no
field of an answer is required; 64-bit integers are strings, timestamps RFC 3339, enums their
names), errors as google.rpc.Status JSON.

    text = render(openapi_document())

`python scripts/protos.py generate` writes it to edge_proxy/openapi.json (`check` fails when that
file is stale); Envoy answers GET /openapi.json with the file (edge_proxy.envoy_config).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

from edge_proxy.envoy_config import HEALTH_PATH, OPENAPI_PATH, PUBLIC_RPCS
from edge_proxy.http_rules import HTTP_VERBS, chirp_services

OPENAPI_VERSION = "3.1.0"
API_VERSION = "v1"
BEARER = "bearerAuth"
STATUS = "google.rpc.Status"
ANY = "google.protobuf.Any"
INT32_RANGE = {"minimum": -(2**31), "maximum": 2**31 - 1}
UINT32_RANGE = {"minimum": 0, "maximum": 2**32 - 1}
INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
# Floating point numbers: a JSON number, or one of the strings proto3 JSON uses for the others.
FLOATING = {"oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
_T = FieldDescriptor
SCALARS: Mapping[int, Mapping[str, Any]] = {
    _T.TYPE_INT32: {"type": "integer", "format": "int32", **INT32_RANGE},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32", **INT32_RANGE},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32", **INT32_RANGE},
    _T.TYPE_UINT32: {"type": "integer", "format": "uint32", **UINT32_RANGE},
    _T.TYPE_FIXED32: {"type": "integer", "format": "uint32", **UINT32_RANGE},
    _T.TYPE_INT64: INT64,
    _T.TYPE_SINT64: INT64,
    _T.TYPE_SFIXED64: INT64,
    _T.TYPE_UINT64: UINT64,
    _T.TYPE_FIXED64: UINT64,
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
    _T.TYPE_DOUBLE: FLOATING,
    _T.TYPE_FLOAT: FLOATING,
}
# The well-known types proto3 JSON prints other than as an object of their fields.
WELL_KNOWN: Mapping[str, Mapping[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": FLOATING,
    "google.protobuf.FloatValue": FLOATING,
    "google.protobuf.Int64Value": INT64,
    "google.protobuf.UInt64Value": UINT64,
    "google.protobuf.Int32Value": SCALARS[_T.TYPE_INT32],
    "google.protobuf.UInt32Value": SCALARS[_T.TYPE_UINT32],
    "google.protobuf.BoolValue": SCALARS[_T.TYPE_BOOL],
    "google.protobuf.StringValue": SCALARS[_T.TYPE_STRING],
    "google.protobuf.BytesValue": SCALARS[_T.TYPE_BYTES],
}
# Envoy's health check (edge_proxy.envoy_config.local_reply_config).
HEALTH = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]}},
    "required": ["status"],
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


class Schemas:
    """The components/schemas of the messages and enums reached from the operations."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        """A field's value schema, repeated and map fields included."""
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self.single(value)}
            if key.type != _T.TYPE_STRING:
                pattern = "^(true|false)$" if key.type == _T.TYPE_BOOL else "^-?[0-9]+$"
                schema["propertyNames"] = {"pattern": pattern}
            return schema
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of a field."""
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(SCALARS[field.type])

    def message(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[message.full_name])
        name = message.full_name
        if name not in self.components:
            self.components[name] = {}  # taken before the fields: a message may contain itself
            self.components[name] = self.object(message.fields)
        return _ref(name)

    def object(self, fields: Iterable[FieldDescriptor]) -> dict[str, Any]:
        """An object of these fields, none required (proto3 JSON omits default values), no others
        (the transcoder rejects an unknown field)."""
        chosen = list(fields)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: self.field(f) for f in chosen},
            "additionalProperties": False,
        }
        # At most one field of a oneof is set; a proto3 `optional` field is a oneof of one.
        oneofs: dict[str, list[str]] = {}
        for f in chosen:
            if f.containing_oneof is not None:
                oneofs.setdefault(f.containing_oneof.full_name, []).append(f.name)
        exclusive = [
            {"not": {"required": list(pair)}}
            for names in oneofs.values()
            for pair in itertools.combinations(names, 2)
        ]
        if exclusive:
            schema["allOf"] = exclusive
        return schema

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if enum.full_name not in self.components:
            self.components[enum.full_name] = {"type": "string", "enum": [v.name for v in enum.values]}
        return _ref(enum.full_name)


def _bindings(rule: http_pb2.HttpRule) -> list[tuple[str, str, str]]:
    """(verb, template, body) of a rule and its additional bindings."""
    found = []
    for binding in (rule, *rule.additional_bindings):
        verb = binding.WhichOneof("pattern")
        if verb in HTTP_VERBS:
            found.append((verb, getattr(binding, verb), binding.body))
    return found


def _path_fields(template: str) -> list[str]:
    return [segment[1:-1] for segment in template.split("/") if segment.startswith("{")]


def _query_parameters(
    schemas: Schemas,
    message: Descriptor,
    skip: set[str],
    prefix: str = "",
    seen: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The query parameters of the fields the path and body leave: scalars and repeated scalars by
    name, a message's fields as `field.subfield` (the transcoder's form); maps and repeated
    messages cannot be sent in a query."""
    parameters: list[dict[str, Any]] = []
    for field in message.fields:
        name = prefix + field.name
        if name in skip:
            continue
        entry = field.message_type
        if entry is not None and (entry.GetOptions().map_entry or field.is_repeated):
            continue
        if entry is not None and entry.full_name not in WELL_KNOWN:
            if entry.full_name not in seen:
                inner = seen | {entry.full_name}
                parameters.extend(_query_parameters(schemas, entry, skip, f"{name}.", inner))
            continue
        parameters.append({"name": name, "in": "query", "required": False, "schema": schemas.field(field)})
    return parameters


def operation(
    schemas: Schemas,
    service: ServiceDescriptor,
    method_name: str,
    binding: tuple[str, str, str],
    operation_id: str,
) -> dict[str, Any]:
    method = service.methods_by_name[method_name]
    _, template, body = binding
    request = method.input_type
    path_fields = _path_fields(template)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.field(request.fields_by_name[name]),
        }
        for name in path_fields
    ]
    result: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{service.name}.{method.name}",
        "tags": [service.name],
    }
    if body == "*":
        remaining = [f for f in request.fields if f.name not in path_fields]
        schema = schemas.object(remaining) if path_fields else schemas.message(request)
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    else:
        if body:
            body_schema = schemas.field(request.fields_by_name[body])
            result["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        parameters.extend(_query_parameters(schemas, request, {*path_fields, body}))
    if parameters:
        result["parameters"] = parameters
    answer = schemas.message(method.output_type)
    if method.server_streaming:
        # One server-sent event per message: `data: <the message as JSON>` (stream_sse_style_delimited).
        event = {
            "type": "object",
            "properties": {
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": answer}
            },
            "required": ["data"],
        }
        ok = {
            "description": "a server-sent event per message, for as long as the client listens",
            "content": {"text/event-stream": {"schema": event}},
        }
    else:
        ok = _json_body(answer, "OK")
    public = f"/{service.full_name}/{method.name}" in PUBLIC_RPCS
    result["responses"] = {"200": ok, **_error_responses(public)}
    if public:
        result["security"] = []
    return result


def _error_responses(public: bool) -> dict[str, Any]:
    named = {"400": "InvalidArgument", "429": "RateLimited", "default": "Error"}
    if not public:
        named["401"] = "Unauthenticated"
    return {status: {"$ref": f"#/components/responses/{name}"} for status, name in named.items()}


def _envoy_paths() -> dict[str, Any]:
    """What Envoy answers itself: its health check and this document."""
    return {
        HEALTH_PATH: {
            "get": {
                "operationId": "healthz",
                "summary": "Whether every upstream cluster is healthy",
                "tags": ["Envoy"],
                "security": [],
                "responses": {
                    "200": _json_body(HEALTH, "every service is healthy"),
                    "503": _json_body(HEALTH, "a service is down"),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["Envoy"],
                "security": [],
                "responses": {"200": _json_body({"type": "object"}, "the OpenAPI document")},
            }
        },
    }


def openapi_document(services: Iterable[ServiceDescriptor] | None = None) -> dict[str, Any]:
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for service in chirp_services() if services is None else services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            bindings = _bindings(options.Extensions[annotations_pb2.http])
            for index, binding in enumerate(bindings):
                operation_id = f"{service.name}_{method.name}" + (f"_{index}" if index else "")
                verb, template, _ = binding
                paths.setdefault(template, {})[verb] = operation(
                    schemas, service, method.name, binding, operation_id
                )
    paths.update(_envoy_paths())
    status_schema = {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "a google.rpc.Code"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": dict(WELL_KNOWN[ANY])},
        },
        "required": ["code", "message"],
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Chirp",
            "version": API_VERSION,
            "description": "Chirp's REST API, transcoded by Envoy from the gRPC contracts (protos/). "
            "Generated by `python scripts/protos.py generate`; do not edit.",
        },
        "paths": paths,
        "security": [{BEARER: []}],
        "components": {
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
            "schemas": {**schemas.components, STATUS: status_schema},
            "responses": {
                name: _json_body(_ref(STATUS), description)
                for name, description in (
                    ("InvalidArgument", "bad input (INVALID_ARGUMENT), the message names the field"),
                    ("Unauthenticated", "no valid bearer token (UNAUTHENTICATED)"),
                    ("RateLimited", "over a rate limit (RESOURCE_EXHAUSTED); Retry-After says when to retry"),
                    ("Error", "an error as google.rpc.Status"),
                )
            },
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """Deterministic JSON: sorted keys, two-space indents, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
