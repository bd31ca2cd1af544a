"""JSON <-> proto for the gateway, as Envoy's grpc_json_transcoder does it with
preserve_proto_field_names: true: the request message from path bindings, query parameters and
the JSON body; the response as compact snake_case JSON; a gRPC status as google.rpc.Status JSON.

A request that cannot be transcoded raises TranscodeError, which carries everything the
gateway needs to answer it."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from edge_proxy.http_status import code_number
from edge_proxy.routes import Route

ERROR_DOMAIN = "chirp.dev"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Importing error_details_pb2 puts ErrorInfo, BadRequest, ... in the default pool, which is what
# resolves the "@type" of each Status detail.
_POOL = descriptor_pool.Default()
_POOL.FindMessageTypeByName(error_details_pb2.ErrorInfo.DESCRIPTOR.full_name)  # KeyError if not

_INTEGER = re.compile(r"-?[0-9]+")
_FD = FieldDescriptor
_SIGNED = {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_INT64, _FD.TYPE_SINT64}
_SIGNED |= {_FD.TYPE_SFIXED64}
_UNSIGNED = {_FD.TYPE_UINT32, _FD.TYPE_FIXED32, _FD.TYPE_UINT64, _FD.TYPE_FIXED64}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_FROM_STRING = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}


class TranscodeError(Exception):
    """A request the gateway answers itself: HTTP status, gRPC code, message, ErrorInfo reason,
    and the offending field (for a BadRequest detail) when there is one."""

    def __init__(
        self,
        http_status: int,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        field: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.reason = reason
        self.field = field
        self.headers = dict(headers or {})

    def status(self) -> status_pb2.Status:
        metadata = {"field": self.field} if self.field else {}
        details: list[Message] = [
            error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=metadata)
        ]
        if self.field:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=self.field, description=self.message
            )
            details.append(error_details_pb2.BadRequest(field_violations=[violation]))
        return make_status(code_number(self.code), self.message, details)


def bad_request(message: str, *, field: str = "", reason: str = "INVALID_ARGUMENT") -> TranscodeError:
    return TranscodeError(400, grpc.StatusCode.INVALID_ARGUMENT, message, reason=reason, field=field)


def make_status(code: int, message: str, details: Sequence[Message] = ()) -> status_pb2.Status:
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return status_pb2.Status(code=code, message=message, details=packed)


# Requests.


def build_request(
    route: Route, bindings: Mapping[str, str], query: Sequence[tuple[str, str]], body: bytes
) -> Message:
    """The request message: the body first, then query parameters, then path bindings, so a
    field named in the path wins over the same field in the body (as in Envoy)."""
    request = route.request_type()
    if route.body:
        _parse_body(route, request, body)
    path_fields = set(bindings)
    by_name: dict[str, list[str]] = {}
    for name, value in query:
        by_name.setdefault(name, []).append(value)
    for name, values in by_name.items():
        fields = _query_field(route, _descriptor(request), name, path_fields)
        _assign(request, fields, values, name)
    for field_path, value in bindings.items():
        bound = _resolve(_descriptor(request), field_path)
        if bound is None:  # the descriptors are compiled, so this is a broken proto
            raise TranscodeError(
                500, grpc.StatusCode.INTERNAL, f"{route.rpc}: no field {field_path}", reason="BAD_ROUTE"
            )
        _assign(request, bound, [value], field_path)
    return request


def _parse_body(route: Route, request: Message, body: bytes) -> None:
    if not body.strip():
        return  # an empty body is an empty message, as in Envoy
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8", reason="MALFORMED_JSON") from None
    except json.JSONDecodeError as error:
        raise bad_request(f"malformed JSON in the request body: {error}", reason="MALFORMED_JSON") from None
    if route.body == "*":
        if not isinstance(value, dict):
            raise bad_request("the request body must be a JSON object", reason="MALFORMED_JSON")
        target, document = request, value
    else:
        fields = _resolve(_descriptor(request), route.body)
        assert fields is not None, f"{route.rpc}: body field {route.body} not in the request"
        target = request
        for field in fields[:-1]:
            target = getattr(target, field.name)
        document = {fields[-1].name: value}
    try:
        json_format.ParseDict(document, target, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as error:
        text = _parse_error_text(error)
        raise bad_request(text, field=_field_in(text), reason="INVALID_FIELD") from None


def _parse_error_text(error: Exception) -> str:
    return str(error).replace("\n", " ") or "the request body does not fit the request message"


def _field_in(text: str) -> str:
    found = re.search(r"Failed to parse (\w+) field", text)
    return found.group(1) if found else ""


def _query_field(
    route: Route, message: Descriptor, name: str, path_fields: set[str]
) -> list[FieldDescriptor]:
    fields = None if route.body == "*" else _resolve(message, name)
    if fields is not None:
        canonical = ".".join(f.name for f in fields)
        taken = path_fields | ({route.body} if route.body else set())
        if any(canonical == t or canonical.startswith(t + ".") for t in taken):
            fields = None
    if fields is None or any(f.is_repeated or f.type != _FD.TYPE_MESSAGE for f in fields[:-1]):
        raise bad_request(f"unknown query parameter {name!r}", field=name, reason="UNKNOWN_QUERY_PARAMETER")
    return fields


def _descriptor(message: Message) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def _resolve(message: Descriptor, field_path: str) -> list[FieldDescriptor] | None:
    """The fields along a dotted path, by proto name or JSON name; None when one is missing."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for part in field_path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(part) or _by_json_name(current, part)
        if field is None:
            return None
        fields.append(field)
        current = field.message_type if field.type == _FD.TYPE_MESSAGE else None
    return fields


def _by_json_name(message: Descriptor, name: str) -> FieldDescriptor | None:
    for field in message.fields:
        if field.json_name == name:
            return field
    return None


def _assign(request: Message, fields: Sequence[FieldDescriptor], values: Sequence[str], name: str) -> None:
    parent = request
    for field in fields[:-1]:
        parent = getattr(parent, field.name)
    leaf = fields[-1]
    try:
        if leaf.is_repeated:
            container = getattr(parent, leaf.name)
            del container[:]
            for value in values:
                if leaf.type == _FD.TYPE_MESSAGE:
                    _message_from_text(container.add(), value, name)
                else:
                    container.append(_scalar(leaf, value, name))
        elif len(values) > 1:
            raise bad_request(f"{name} is given more than once", field=name, reason="INVALID_FIELD")
        elif leaf.type == _FD.TYPE_MESSAGE:
            child = getattr(parent, leaf.name)
            child.Clear()
            _message_from_text(child, values[0], name)
            child.SetInParent()
        else:
            setattr(parent, leaf.name, _scalar(leaf, values[0], name))
    except ValueError:  # out of range for the field's type
        raise _invalid(name, values[-1], leaf) from None


def _scalar(field: FieldDescriptor, text: str, name: str) -> Any:
    kind = field.type
    if kind in _SIGNED or kind in _UNSIGNED:
        if not _INTEGER.fullmatch(text) or (kind in _UNSIGNED and text.startswith("-")):
            raise _invalid(name, text, field)
        return int(text)
    if kind in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise _invalid(name, text, field) from None
    if kind == _FD.TYPE_BOOL:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise _invalid(name, text, field)
    if kind == _FD.TYPE_STRING:
        return text
    if kind == _FD.TYPE_BYTES:
        try:
            return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise _invalid(name, text, field) from None
    if kind == _FD.TYPE_ENUM:
        assert field.enum_type is not None
        named = field.enum_type.values_by_name.get(text)
        if named is not None:
            return named.number
        if _INTEGER.fullmatch(text):
            return int(text)
        raise _invalid(name, text, field)
    raise _invalid(name, text, field)


def _message_from_text(message: Message, text: str, name: str) -> None:
    full_name = message.DESCRIPTOR.full_name
    if full_name in _WRAPPERS:
        value_field = _descriptor(message).fields_by_name["value"]
        setattr(message, "value", _scalar(value_field, text, name))  # noqa: B010  # generic message
        return
    if full_name in _FROM_STRING:
        try:
            json_format.Parse(json.dumps(text), message)
        except (json_format.ParseError, ValueError) as error:
            raise bad_request(f"{name}: {error}", field=name, reason="INVALID_FIELD") from None
        return
    raise bad_request(f"{name} cannot be set from a query parameter", field=name, reason="INVALID_FIELD")


def _invalid(name: str, text: str, field: FieldDescriptor) -> TranscodeError:
    type_name = field.message_type.full_name if field.message_type else _TYPE_NAMES.get(field.type, "value")
    message = f"{name}: invalid value {text!r} for type {type_name}"
    return bad_request(message, field=name, reason="INVALID_FIELD")


_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower() for name, value in vars(_FD).items() if name.startswith("TYPE_")
}


# Responses.


def dumps(document: object) -> bytes:
    """Compact JSON, UTF-8 as is: what Envoy's printer writes."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def to_json(message: Message) -> dict[str, Any]:
    """snake_case names, int64 as strings, RFC 3339 timestamps, default values left out."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True, descriptor_pool=_POOL)


def response_json(route: Route, response: Message) -> bytes:
    """The answer's JSON: the whole message, or only its `response_body` field."""
    if not route.response_body:
        return dumps(to_json(response))
    field = response.DESCRIPTOR.fields_by_name[route.response_body]
    if field.type == _FD.TYPE_MESSAGE and not field.is_repeated:
        return dumps(to_json(getattr(response, field.name)))
    document = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return dumps(document[field.name])


def status_from_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed call."""
    trailers = cast(Sequence[tuple[str, str | bytes]], error.trailing_metadata() or ())
    return status_from_trailers(error.code(), error.details() or "", trailers)


def status_from_trailers(
    code: grpc.StatusCode, message: str, trailers: Sequence[tuple[str, str | bytes]]
) -> status_pb2.Status:
    """From grpc-status-details-bin when the server sent one, else built from code and message."""
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                break
    return status_pb2.Status(code=code_number(code), message=message)


def status_json(status: status_pb2.Status) -> bytes:
    """google.rpc.Status as JSON, each detail with its "@type"; a detail of a type this process
    does not know keeps its bytes in "value" (base64) instead of failing the whole answer."""
    document: dict[str, Any] = {"code": status.code}
    if status.message:
        document["message"] = status.message
    details = [_detail_json(detail) for detail in status.details]
    if details:
        document["details"] = details
    return dumps(document)


def _detail_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        return to_json(detail)
    except (TypeError, KeyError, json_format.SerializeToJsonError):
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}
