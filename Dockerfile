FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only the package sources: a local build/ or .venv in the context must not end up in the wheel.
COPY pyproject.toml README.md ./
COPY src/ src/
COPY collector/ collector/
COPY schema/ schema/
COPY ingest/ ingest/
COPY query_api/ query_api/
COPY dashboards/ dashboards/
COPY emitter/ emitter/
RUN pip install . \
    && useradd --system --create-home --uid 10001 agentledger

USER agentledger
WORKDIR /home/agentledger
# Inside a container the loopback default would be unreachable from other containers and the host.
ENV AGENTLEDGER_HOST=0.0.0.0
EXPOSE 4318 8000
CMD ["agentledger", "up"]
