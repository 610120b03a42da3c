FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY harvester ./harvester
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --create-home harvester
USER harvester
ENTRYPOINT ["harvester"]
