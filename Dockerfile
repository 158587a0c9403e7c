# Pinned: a rebuild months later must get the same interpreter (bump deliberately).
FROM python:3.11.11-slim-bookworm

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
# The data folder (spool: spans acknowledged but not yet exported), the keys folder and the checkpoint
# folder the collectors share are volumes in docker-compose.yml; created here, owned by the user the server
# runs as, so a new named volume starts with that owner and `docker compose run api keys create` can
# write the keys file.
RUN pip install . \
    && useradd --system --create-home --uid 10001 agentledger \
    && mkdir -p /var/lib/agentledger /etc/agentledger/keys /var/lib/agentledger-checkpoints \
    && chown agentledger:agentledger /var/lib/agentledger /etc/agentledger/keys /var/lib/agentledger-checkpoints

USER agentledger
WORKDIR /home/agentledger
# Inside a container the loopback default would be unreachable from other containers and the host.
ENV AGENTLEDGER_HOST=0.0.0.0 AGENTLEDGER_DATA_DIR=/var/lib/agentledger
VOLUME ["/var/lib/agentledger"]
# OTLP/gRPC, OTLP/HTTP, query API.
EXPOSE 4317 4318 8000
# `docker run IMAGE keys create ...` (and `docker compose run agentledger ...`) run other subcommands.
ENTRYPOINT ["agentledger"]
CMD ["up"]
