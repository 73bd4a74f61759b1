# The gateway image: the same pinned environment and `gateway` entry points as
# `make run` and the tests.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml README.md ./
COPY scripts/ scripts/
COPY extensions/ extensions/
RUN scripts/bootstrap.sh
COPY config/ config/
ENV PATH="/app/.venv/bin:${PATH}"
# /app/logs: request logs (gateway.production.yaml). A named volume mounted there starts
# as a copy of this folder, owner included, so the gateway user can write to it.
RUN useradd --system --uid 10001 gateway && mkdir -p /app/logs && chown -R gateway /app
USER gateway
EXPOSE 4000
ENTRYPOINT ["gateway"]
CMD ["proxy", "--host", "0.0.0.0", "--port", "4000"]
