"""The prediction APIs over gRPC, in the worker's process and on its event loop, so that they
share the models and the batchers with REST:

    tensorflow.serving.PredictionService, tensorflow.serving.ModelService   (`tfserving`)
    inference.GRPCInferenceService                                          (`v2`)
    grpc.health.v1.Health    SERVING once the worker's models are loaded (Kubernetes probes)
    server reflection        (grpcurl, grpcui)

Each worker serves the gRPC port itself (gRPC sets SO_REUSEPORT), so the kernel spreads
connections over the workers as it does for HTTP; a channel stays on one worker.
"""
from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from .. import Serving
from . import tfserving, v2

log = logging.getLogger(__name__)

SERVICES = (tfserving.PREDICTION_SERVICE, tfserving.MODEL_SERVICE, v2.SERVICE)
#: How often the health service follows the models' readiness.
HEALTH_SECONDS = 0.25


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, serving: Serving):
        self.server = server
        self.health = health.aio.HealthServicer()
        self._serving = serving
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        await self.server.start()
        self._watch = asyncio.get_running_loop().create_task(self._follow_readiness())

    async def stop(self, grace: float) -> None:
        """Refuse new calls, and give those in flight `grace` seconds to finish."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def _follow_readiness(self) -> None:
        reported = None
        while True:
            ready = self._serving.manager.ready()
            if ready != reported:
                status = (health_pb2.HealthCheckResponse.SERVING if ready
                          else health_pb2.HealthCheckResponse.NOT_SERVING)
                for service in ("", *SERVICES):
                    await self.health.set(service, status)
                reported = ready
            await asyncio.sleep(HEALTH_SECONDS)


async def start_grpc_server(serving: Serving, host: str, port: int) -> GrpcServer:
    """Build and start the gRPC server on the running loop (a server made before the loop
    cannot run on it)."""
    limit = serving.settings.max_content_length
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1),
    ])
    dataplane, access = serving.dataplane, serving.access
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        tfserving.PredictionService(dataplane, access), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        tfserving.ModelService(dataplane, access), server)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        v2.InferenceService(dataplane, access), server)
    wrapper = GrpcServer(server, serving)
    health_pb2_grpc.add_HealthServicer_to_server(wrapper.health, server)
    reflection.enable_server_reflection(
        (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await wrapper.start()
    log.info("gRPC on %s: %s", address, ", ".join(SERVICES))
    return wrapper
