# The canarylab controller image: `canarylab controller` as a non-root user.
# Build: docker build -t ghcr.io/canarylab/canarylab:0.1.0 .
#
# Only the controller's dependencies go in (deploy/controller-requirements.txt, which
# tests/unit/test_packaging.py derives from the controller's imports); the wheel is
# installed with --no-deps on top, so no Jupyter stack, pandas or plotly is pulled in.
# The runbooks and notebooks ride along in the wheel but are never run here.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY canarylab ./canarylab
COPY runbooks ./runbooks
COPY notebooks ./notebooks
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin canarylab
# constraints.txt: the versions the tests ran with.
COPY deploy/controller-requirements.txt constraints.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/controller-requirements.txt -c /tmp/constraints.txt \
    && rm /tmp/controller-requirements.txt /tmp/constraints.txt
COPY --from=build /wheels /wheels
# The import line fails the build if the controller needs something the requirements lack.
RUN pip install --no-cache-dir --no-deps /wheels/canarylab-*.whl && rm -rf /wheels \
    && python -c "import canarylab.cli, canarylab.operator.handlers, canarylab.operator.run, \
canarylab.routers.apisix, canarylab.routers.gatewayapi"
USER 10001
EXPOSE 8080 9090
# deploy/controller.yaml sets the same command with its flags.
ENTRYPOINT ["canarylab"]
CMD ["controller", "--all-namespaces", "--metrics-port=9090", "--liveness=http://0.0.0.0:8080/healthz"]
