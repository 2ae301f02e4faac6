# One image for every Flagsite process (web, grpc, worker, beat); docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY python-sdk /app/python-sdk
RUN pip install /app/python-sdk
COPY . /app
RUN pip install "/app[prod]" && DJANGO_SETTINGS_MODULE=flagsite.settings python manage.py collectstatic --noinput
RUN useradd --system --uid 10001 flagsite && chown -R flagsite /app/artifacts
USER flagsite
EXPOSE 8000 50051
# HTTP and /ws on one port, behind a proxy that reads whole requests under timeouts (deploy/nginx.conf):
# README "Deployment".
CMD ["granian", "--interface", "asgi", "--loop", "uvloop", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--respawn-failed-workers", "--access-log", "flagsite.asgi:application"]
