"""One middleware for every HTTP request: the request id (see requestid.py) and the request
latency histogram (metrics.py). Sync and async capable, so daphne runs it without a thread hop."""

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from flagsite.ops import metrics
from flagsite.ops.requestid import request_id_from, request_id_var


class SyncAndAsyncMiddleware:
    """A middleware that runs in whichever mode the stack below it has (no thread hop either way)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class RequestIdMiddleware(SyncAndAsyncMiddleware):

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request_id, token, started = self._before(request)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        return self._after(request, response, request_id, started)

    async def _acall(self, request):
        request_id, token, started = self._before(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id_var.reset(token)
        return self._after(request, response, request_id, started)

    @staticmethod
    def _before(request):
        request_id = request_id_from(request.META)
        request.META["HTTP_X_REQUEST_ID"] = request_id  # audit.actor.Actor.from_request reads it
        request.request_id = request_id
        return request_id, request_id_var.set(request_id), time.perf_counter()

    @staticmethod
    def _after(request, response, request_id, started):
        metrics.observe_request(request, response.status_code, time.perf_counter() - started)
        response["X-Request-ID"] = request_id
        return response
