"""TensorFlow Serving's gRPC API, from the protos its clients use (`tensorflow-serving-api`):

    tensorflow.serving.PredictionService   Predict, Classify, Regress, GetModelMetadata
    tensorflow.serving.ModelService        GetModelStatus

A request's `model_spec` names the model and optionally a version or a version label (a
registry alias) and a signature. Tensors travel as `TensorProto`s (`tensor_proto`). This module
holds the wire format only; the data plane does the work.
"""
from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import any_pb2, wrappers_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2, error_codes_pb2
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from schemas.errors import InvalidArgument

from .. import tf_example
from ..served import ServedVersion
from .common import Servicer, deadline_of, rpc
from .tensor_proto import ENUM_OF, from_array, to_array

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
_STATES = get_model_status_pb2.ModelVersionStatus.State


class _ModelSpecs:
    """What every TF Serving request starts with: its model_spec resolved to a version."""

    async def served(self, spec: model_pb2.ModelSpec, call) -> ServedVersion:
        version = spec.version.value if spec.HasField("version") else None
        label = spec.version_label or None
        if version is not None and label is not None:
            raise InvalidArgument("model_spec may name a version or a version_label, not both")
        return await self.dataplane.served(spec.name, version, label, call)

    @staticmethod
    def answered_spec(served: ServedVersion, signature: str = "") -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=served.name, signature_name=signature,
                                   version=wrappers_pb2.Int64Value(value=served.version))


class PredictionService(_ModelSpecs, Servicer,
                        prediction_service_pb2_grpc.PredictionServiceServicer):

    @rpc(api="tfserving_grpc")
    async def Predict(self, request: predict_pb2.PredictRequest, context, call):
        served = await self.served(request.model_spec, call)
        signature, spec = self.dataplane.signature(served, request.model_spec.signature_name,
                                                   call)
        wanted = list(request.output_filter)
        unknown = sorted(set(wanted) - set(spec["outputs"]))
        if unknown:
            raise InvalidArgument(f"output tensor alias not found in signature: "
                                  f"{', '.join(unknown)}")
        arrays = {name: to_array(proto, f"input {name}") for name, proto in request.inputs.items()}
        outputs = await self.dataplane.predict(served, signature, spec, arrays,
                                               deadline_of(context))
        response = predict_pb2.PredictResponse(model_spec=self.answered_spec(served, signature))
        for name in wanted or outputs:
            response.outputs[name].CopyFrom(from_array(outputs[name]))
        return response

    @rpc(api="tfserving_grpc")
    async def Classify(self, request: classification_pb2.ClassificationRequest, context, call):
        served, signature, outputs = await self._examples(
            request, tf_example.CLASSIFY, context, call)
        result = classification_pb2.ClassificationResult()
        for row in tf_example.classify_results(outputs):
            result.classifications.add().classes.extend(
                classification_pb2.Class(label=label, score=score) for label, score in row)
        return classification_pb2.ClassificationResponse(
            model_spec=self.answered_spec(served, signature), result=result)

    @rpc(api="tfserving_grpc")
    async def Regress(self, request: regression_pb2.RegressionRequest, context, call):
        served, signature, outputs = await self._examples(
            request, tf_example.REGRESS, context, call)
        result = regression_pb2.RegressionResult(regressions=[
            regression_pb2.Regression(value=v) for v in tf_example.regress_results(outputs)])
        return regression_pb2.RegressionResponse(
            model_spec=self.answered_spec(served, signature), result=result)

    async def _examples(self, request, method: str, context, call):
        served = await self.served(request.model_spec, call)
        signature, spec = self.dataplane.signature(served, request.model_spec.signature_name,
                                                   call)
        input_name = tf_example.check_method(signature, spec, method)
        examples = serialized_examples(request.input)
        outputs = await self.dataplane.predict(served, signature, spec, {input_name: examples},
                                               deadline_of(context))
        return served, signature, outputs

    @rpc()
    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context, call):
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidArgument("metadata_field must be exactly ['signature_def']")
        served = await self.served(request.model_spec, call)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=self.answered_spec(served))
        packed = any_pb2.Any()
        packed.Pack(signature_def_map(served))
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "MultiInference is not served; call Classify or Regress")


class ModelService(_ModelSpecs, Servicer, model_service_pb2_grpc.ModelServiceServicer):

    @rpc()
    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context, call):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        await self.dataplane.check(call, spec.name)
        statuses = self.dataplane.manager.statuses(spec.name, version, spec.version_label or None)
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[version_status(s) for s in statuses])

    async def HandleReloadConfigRequest(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "models follow the registry; publish or move an alias instead")


def version_status(served: ServedVersion) -> get_model_status_pb2.ModelVersionStatus:
    code = (error_codes_pb2.OK if not served.error else
            error_codes_pb2.PERMISSION_DENIED if served.refused else error_codes_pb2.UNKNOWN)
    return get_model_status_pb2.ModelVersionStatus(
        version=served.version, state=_STATES.Value(served.state),
        status={"error_code": code, "error_message": served.error})


def _tensor_info(spec: dict) -> meta_graph_pb2.TensorInfo:
    shape = spec["shape"]
    return meta_graph_pb2.TensorInfo(
        name=spec["name"], dtype=ENUM_OF.get(spec["dtype"], 0),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            unknown_rank=shape is None,
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape or ()]))


def signature_def_map(served: ServedVersion) -> get_model_metadata_pb2.SignatureDefMap:
    """The signatures this version serves, as TF Serving describes them."""
    serving = set(served.runtime.signature_names())
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in served.manifest["signatures"].items():
        if name not in serving:
            continue
        definition = result.signature_def[name]
        definition.method_name = sig["method_name"]
        for key, spec in sig["inputs"].items():
            definition.inputs[key].CopyFrom(_tensor_info(spec))
        for key, spec in sig["outputs"].items():
            definition.outputs[key].CopyFrom(_tensor_info(spec))
    return result


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """The examples of a Classify or Regress request, each merged over the context (the
    example's own features win), serialized as the signature's string input takes them."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = list(request_input.example_list.examples), None
    elif kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        examples, context = list(listed.examples), listed.context
    else:
        raise InvalidArgument("the request's input holds no examples")
    if not examples:
        raise InvalidArgument("the request's input holds no examples")
    serialized = np.empty(len(examples), dtype=object)
    for i, example in enumerate(examples):
        if context is not None:
            merged = example_pb2.Example()
            merged.CopyFrom(context)
            for key, feature in example.features.feature.items():
                merged.features.feature[key].CopyFrom(feature)
            example = merged
        serialized[i] = example.SerializeToString()
    return serialized
