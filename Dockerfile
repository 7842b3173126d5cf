# The canarylab controller image: `canarylab controller` as a non-root user.
# Build: docker build -t ghcr.io/canarylab/canarylab:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY canarylab ./canarylab
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin canarylab
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 8080 9090
# deploy/controller.yaml sets the same command with its flags.
ENTRYPOINT ["canarylab"]
CMD ["controller", "--all-namespaces", "--metrics-port=9090", "--liveness=http://0.0.0.0:8080/healthz"]
