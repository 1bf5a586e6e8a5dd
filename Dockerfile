# lrserve's server image: `docker build -t lrserve .`, then see README.md, "Operations".
#
#   docker run -p 8000:8000 -v lrserve-data:/var/lib/lrserve -e LRSERVE_TOKENS='[...]' lrserve
#
# runs one server on SQLite (/var/lib/lrserve/lrserve.db); `docker run lrserve token new NAME --scopes ...` makes a
# token. tests/ops/test_dockerfile.py checks what it can without Docker: the folders copied are the package's, the
# entry point is the one docker-compose.yml's commands follow.

# Build: wheels of lrserve[server] and its dependencies (no compilers needed in the final image).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY service/ service/
COPY client/ client/
COPY cli/ cli/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels "lrserve[server]" && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/lrserve --create-home lrserve
# Not root; the working directory holds the SQLite file of a single-server deployment (a volume).
USER lrserve
WORKDIR /var/lib/lrserve
VOLUME ["/var/lib/lrserve"]
EXPOSE 8000
# uvicorn stops accepting, lets requests in flight finish (shutdown_timeout, 30 s), closes the store, exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lrserve"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
