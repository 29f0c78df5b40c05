"""Server reflection, v1 and v1alpha, that resolves every symbol of the served files.

Design notes: ARCHITECTURE.md, "Module notes", rpc/reflection.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as pb

from totpd.rpc.loop_server import LoopServer

V1ALPHA_SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"
_LONGEST_ECHOED_NAME = 200


def enable_reflection(server: LoopServer, service_names: Iterable[str]) -> None:
    """Serve reflection (v1 and v1alpha) for `service_names` and for itself."""
    service_names = tuple(service_names)
    v1_file = _v1_reflection_file()
    pool = descriptor_pool.Default()
    files = [pool.FindFileContainingSymbol(name) for name in service_names]
    files += [pb.DESCRIPTOR, v1_file]
    names = [*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME]
    servicer = ReflectionServicer(names, files)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=pb.ServerReflectionRequest.FromString,
        response_serializer=pb.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(name, {_METHOD: handler})
            for name in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
        )
    )


class ReflectionServicer:
    """Answers every reflection request from the files given, indexed once."""

    def __init__(self, service_names: Iterable[str], files: Iterable[FileDescriptor]) -> None:
        self._service_names = tuple(sorted(set(service_names)))
        self._files = _with_imports(files)
        self._by_symbol = {
            symbol: file for file in self._files.values() for symbol in _symbols(file)
        }
        self._extensions = {
            (extension.containing_type.full_name, extension.number): file
            for file in self._files.values()
            for extension in _extensions(file)
        }

    def ServerReflectionInfo(  # noqa: N802 (the name of the method it serves)
        self, request_iterator: Iterator[pb.ServerReflectionRequest], context: Any
    ) -> Iterator[pb.ServerReflectionResponse]:
        for request in request_iterator:
            yield self.answer(request)

    def answer(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            services = [pb.ServiceResponse(name=name) for name in self._service_names]
            return pb.ServerReflectionResponse(
                original_request=request,
                list_services_response=pb.ListServiceResponse(service=services),
            )
        if kind == "file_by_filename":
            return self._file_answer(request, self._files.get(request.file_by_filename))
        if kind == "file_containing_symbol":
            return self._file_answer(request, self._by_symbol.get(request.file_containing_symbol))
        if kind == "file_containing_extension":
            wanted = request.file_containing_extension
            key = (wanted.containing_type, wanted.extension_number)
            return self._file_answer(request, self._extensions.get(key))
        if kind == "all_extension_numbers_of_type":
            return self._extension_numbers(request, request.all_extension_numbers_of_type)
        return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "no known request kind was set")

    def _file_answer(
        self, request: pb.ServerReflectionRequest, file: FileDescriptor | None
    ) -> pb.ServerReflectionResponse:
        if file is None:
            kind = request.WhichOneof("message_request")
            asked = str(getattr(request, kind or ""))[:_LONGEST_ECHOED_NAME]
            return _error(request, grpc.StatusCode.NOT_FOUND, f"{kind} not found: {asked}")
        # The file first, then its imports: clients that read only the first still work.
        files = [file, *(f for f in _with_imports([file]).values() if f is not file)]
        return pb.ServerReflectionResponse(
            original_request=request,
            file_descriptor_response=pb.FileDescriptorResponse(
                file_descriptor_proto=[_serialized(f) for f in files]
            ),
        )

    def _extension_numbers(
        self, request: pb.ServerReflectionRequest, type_name: str
    ) -> pb.ServerReflectionResponse:
        if type_name not in self._by_symbol:
            return _error(request, grpc.StatusCode.NOT_FOUND, "type not found")
        numbers = sorted(number for name, number in self._extensions if name == type_name)
        return pb.ServerReflectionResponse(
            original_request=request,
            all_extension_numbers_response=pb.ExtensionNumberResponse(
                base_type_name=type_name, extension_number=numbers
            ),
        )


def _error(
    request: pb.ServerReflectionRequest, code: grpc.StatusCode, message: str
) -> pb.ServerReflectionResponse:
    number: int = code.value[0]
    return pb.ServerReflectionResponse(
        original_request=request,
        error_response=pb.ErrorResponse(error_code=number, error_message=message),
    )


def _with_imports(files: Iterable[FileDescriptor]) -> dict[str, FileDescriptor]:
    """The files and everything they import, by file name."""
    found: dict[str, FileDescriptor] = {}
    pending = list(files)
    while pending:
        file = pending.pop()
        if file.name not in found:
            found[file.name] = file
            pending.extend(file.dependencies)
    return found


def _serialized(file: FileDescriptor) -> bytes:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto.SerializeToString()


def _symbols(file: FileDescriptor) -> Iterator[str]:
    """Every fully qualified name the file declares (protoc's scoping)."""
    for service in file.services_by_name.values():
        yield service.full_name
        yield from (method.full_name for method in service.methods)
    for message in file.message_types_by_name.values():
        yield from _message_symbols(message)
    for enum in file.enum_types_by_name.values():
        yield from _enum_symbols(enum, file.package)
    yield from (extension.full_name for extension in file.extensions_by_name.values())


def _message_symbols(message: Descriptor) -> Iterator[str]:
    yield message.full_name
    yield from (field.full_name for field in message.fields)
    yield from (oneof.full_name for oneof in message.oneofs)
    yield from (extension.full_name for extension in message.extensions)
    for nested in message.nested_types:
        yield from _message_symbols(nested)
    for enum in message.enum_types:
        yield from _enum_symbols(enum, message.full_name)


def _enum_symbols(enum: EnumDescriptor, scope: str) -> Iterator[str]:
    """The enum and its values, each value under both names tools use: protoc
    scopes it beside the enum, grpcurl (Go's protoreflect) prints it inside."""
    yield enum.full_name
    prefix = f"{scope}." if scope else ""
    for value in enum.values:
        yield prefix + value.name
        yield f"{enum.full_name}.{value.name}"


def _extensions(file: FileDescriptor) -> Iterator[Any]:
    yield from file.extensions_by_name.values()
    pending = list(file.message_types_by_name.values())
    while pending:
        message = pending.pop()
        yield from message.extensions
        pending.extend(message.nested_types)


def _v1_reflection_file() -> FileDescriptor:
    """grpc/reflection/v1/reflection.proto, from v1alpha's file, in a pool of its own."""
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = _V1_FILE_NAME, new.strip(".")
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool.FindFileByName(_V1_FILE_NAME)
