"""TF Serving gRPC calls as the tests make them: a PredictRequest for half_plus_two's signature
(x: float32 [-1] -> y), and its answer as numbers."""
from __future__ import annotations


def half_plus_request(model: str, *values: float, label: str | None = None):
    """PredictRequest of `values` for a model with half_plus_two's signature."""
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": len(values)}]},
        float_val=list(values)))
    return request


def y_values(response) -> list[float]:
    import numpy as np

    return np.frombuffer(response.outputs["y"].tensor_content, "<f4").tolist()


def prediction_stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)
