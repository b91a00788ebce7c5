"""The Open Inference Protocol (KServe V2) over gRPC: `inference.GRPCInferenceService`, from
the protos `tritonclient.grpc` speaks (ServerLive, ServerReady, ModelReady, ServerMetadata,
ModelMetadata, ModelInfer; Triton's other calls answer UNIMPLEMENTED).

Tensors come as typed `contents` or as `raw_input_contents` (little-endian bytes, one entry per
input, in order); outputs go back as `raw_output_contents`, which is what tritonclient reads.
"""
from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hub.refs import check_version
from schemas.errors import InvalidArgument, ModelNotFound, NotAvailable, TensorError
from schemas.inference import V2_TO_TF

from .. import openinference
from ..tensors import NUMPY_DTYPES, checked_dims, decode_binary, encode_binary, shaped
from .common import Servicer, deadline_of, rpc

SERVICE = "inference.GRPCInferenceService"

#: Which `InferTensorContents` field holds each datatype's values (FP16 only travels raw).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def _version(text: str) -> int | None:
    return check_version(text) if text else None


def _parameter(parameters, key: str) -> str | None:
    if key not in parameters:
        return None
    value = parameters[key]
    if value.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgument(f"parameter {key} must be a string")
    return value.string_param


def input_arrays(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: "
                              "give every input raw, or none")
    openinference.check_unique([t.name for t in request.inputs], "input")
    arrays = {}
    for i, tensor in enumerate(request.inputs):
        where = f"input {tensor.name}"
        if tensor.datatype not in V2_TO_TF:
            raise TensorError(f"{where}: unknown datatype {tensor.datatype!r}")
        shape = checked_dims(list(tensor.shape), where)
        if raw:
            arrays[tensor.name] = decode_binary(memoryview(raw[i]), tensor.datatype, shape, where)
            continue
        field = _CONTENTS_FIELD.get(tensor.datatype)
        if field is None:
            raise TensorError(f"{where}: {tensor.datatype} travels in raw_input_contents only")
        values = getattr(tensor.contents, field)
        dtype = V2_TO_TF[tensor.datatype]
        if dtype == "string":
            array = np.empty(len(values), dtype=object)
            array[:] = list(values)
        else:
            try:
                array = np.array(values, dtype=NUMPY_DTYPES[dtype])
            except OverflowError as e:
                raise TensorError(f"{where}: values out of range for {dtype}") from e
        arrays[tensor.name] = shaped(array, shape, where)
    return arrays


class InferenceService(Servicer, service_pb2_grpc.GRPCInferenceServiceServicer):

    @rpc()
    async def ServerLive(self, request, context, call):
        return service_pb2.ServerLiveResponse(live=True)

    @rpc()
    async def ServerReady(self, request, context, call):
        return service_pb2.ServerReadyResponse(ready=self.dataplane.manager.ready())

    @rpc()
    async def ModelReady(self, request, context, call):
        try:
            await self.dataplane.served(request.name, _version(request.version), call=call)
        except NotAvailable:
            return service_pb2.ModelReadyResponse(ready=False)
        except ModelNotFound:
            if request.version:  # a version that is not (or no longer) served
                return service_pb2.ModelReadyResponse(ready=False)
            raise
        return service_pb2.ModelReadyResponse(ready=True)

    @rpc()
    async def ServerMetadata(self, request, context, call):
        return service_pb2.ServerMetadataResponse(**openinference.server_metadata())

    @rpc()
    async def ModelMetadata(self, request, context, call):
        served = await self.dataplane.served(request.name, _version(request.version), call=call)
        metadata = openinference.model_metadata(self.dataplane, served)
        return service_pb2.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"],
            inputs=[service_pb2.ModelMetadataResponse.TensorMetadata(**t)
                    for t in metadata["inputs"]],
            outputs=[service_pb2.ModelMetadataResponse.TensorMetadata(**t)
                     for t in metadata["outputs"]])

    @rpc(api="v2_grpc")
    async def ModelInfer(self, request: service_pb2.ModelInferRequest, context, call):
        requested = [out.name for out in request.outputs] or None
        if requested:
            openinference.check_unique(requested, "output")
        served, outputs = await openinference.infer(
            self.dataplane, call, request.model_name, _version(request.model_version),
            _parameter(request.parameters, "signature_name"), input_arrays(request), requested,
            deadline_of(context))
        response = service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version=str(served.version), id=request.id)
        for name, array in outputs.items():
            response.outputs.add(name=name, datatype=openinference.array_datatype(array),
                                 shape=array.shape)
            response.raw_output_contents.append(encode_binary(array))
        return response
