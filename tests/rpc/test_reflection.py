"""Server reflection, v1 and v1alpha, from Python clients: every symbol of the
service resolves (methods and enum values included, grpc/grpc#34743), and a call
can be made knowing nothing but what reflection served.

The v1alpha side uses grpcio-reflection's own client (ProtoReflectionDescriptorDatabase);
the v1 side sends the same messages (v1 is v1alpha renamed) to v1's method path.
tests/rpc/test_reflection_grpcurl.py does the same with a real grpcurl.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as rpb
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer
from totpd.v1 import totp_service_pb2

PATHS = {
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
}


def ask(live: LiveServer, version: str, **request: Any) -> rpb.ServerReflectionResponse:
    call = live.channel.stream_stream(
        PATHS[version],
        request_serializer=rpb.ServerReflectionRequest.SerializeToString,
        response_deserializer=rpb.ServerReflectionResponse.FromString,
    )
    (response,) = list(call(iter([rpb.ServerReflectionRequest(**request)]), timeout=10))
    return response


def declared_symbols() -> Iterator[str]:
    """Every name the service's own file declares, enumerated here independently."""
    file = totp_service_pb2.DESCRIPTOR
    service = file.services_by_name["TotpService"]
    yield service.full_name
    yield from (m.full_name for m in service.methods)
    for message in file.message_types_by_name.values():
        yield message.full_name
        yield from (f.full_name for f in message.fields)
    for dependency in file.dependencies:
        for enum in dependency.enum_types_by_name.values():
            yield enum.full_name
            yield from (f"{dependency.package}.{v.name}" for v in enum.values)
            yield from (f"{enum.full_name}.{v.name}" for v in enum.values)


def file_protos(response: rpb.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]


def names_in(proto: descriptor_pb2.FileDescriptorProto) -> set[str]:
    package = proto.package
    names = {f"{package}.{s.name}" for s in proto.service}
    names |= {f"{package}.{s.name}.{m.name}" for s in proto.service for m in s.method}
    for message in proto.message_type:
        names.add(f"{package}.{message.name}")
        names |= {f"{package}.{message.name}.{f.name}" for f in message.field}
    for enum in proto.enum_type:
        names.add(f"{package}.{enum.name}")
        names |= {f"{package}.{v.name}" for v in enum.value}
        names |= {f"{package}.{enum.name}.{v.name}" for v in enum.value}
    return names


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_lists_every_service_with_both_reflection_versions(live: LiveServer, version: str) -> None:
    response = ask(live, version, list_services="*")
    names = [s.name for s in response.list_services_response.service]
    assert names == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "totpd.v1.TotpService",
    ]


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_every_symbol_of_the_service_resolves_to_the_file_declaring_it(
    live: LiveServer, version: str
) -> None:
    symbols = list(declared_symbols())
    assert "totpd.v1.TotpService.Verify" in symbols
    assert "totpd.v1.VERIFY_RESULT_VALID" in symbols
    for symbol in symbols:
        first, *imports = file_protos(ask(live, version, file_containing_symbol=symbol))
        assert symbol in names_in(first), symbol
        assert {p.name for p in imports} == set(first.dependency), symbol


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_an_unknown_symbol_or_file_is_not_found(live: LiveServer, version: str) -> None:
    for request in ({"file_containing_symbol": "totpd.v1.Nope"}, {"file_by_filename": "x.proto"}):
        response = ask(live, version, **request)
        assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        assert "not found" in response.error_response.error_message


def test_v1_describes_itself_under_its_own_package(live: LiveServer) -> None:
    (proto,) = file_protos(
        ask(live, "v1", file_containing_symbol="grpc.reflection.v1.ServerReflection")
    )
    assert (proto.name, proto.package) == (
        "grpc/reflection/v1/reflection.proto",
        "grpc.reflection.v1",
    )
    (method,) = proto.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


def test_a_call_by_reflection_alone(live: LiveServer, secrets_seen: Secrets) -> None:
    """grpcio-reflection's client builds a pool from the server's answers alone
    (nothing of totpd.v1 imported), resolves the method, and calls Enroll."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(live.channel))
    method = pool.FindMethodByName("totpd.v1.TotpService.Enroll")
    assert pool.FindMethodByName("totpd.v1.TotpService.Verify").input_type.name == "VerifyRequest"
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    assert not issubclass(request_type, totp_service_pb2.EnrollRequest)
    enroll = live.channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    response = enroll(request_type(account_id="reflected@example.com"), timeout=10)
    secrets_seen.add(response.secret_base32, response.otpauth_uri)
    assert response.factor.account_id == "reflected@example.com"
    state = pool.FindEnumTypeByName("totpd.v1.FactorState").values_by_number[response.factor.state]
    assert state.name == "FACTOR_STATE_PENDING"
    assert _nothing_of_totpd_in(pool, method.input_type.file)


def _nothing_of_totpd_in(pool: descriptor_pool.DescriptorPool, file: FileDescriptor) -> bool:
    """The reflected descriptors are the client pool's own, not the generated ones."""
    generated: Descriptor = totp_service_pb2.EnrollRequest.DESCRIPTOR
    return file.pool is pool and generated.file.pool is not pool
