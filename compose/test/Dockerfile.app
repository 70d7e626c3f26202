# The project on a local Debian base (the test stand-in for compose/Dockerfile and, with
# triton_cpu.py, for the NGC Triton image). Build context: a folder smoke.sh stages with
# src/ (the working tree's files) and site-packages/ (a copy of an installed environment's
# packages, to avoid a long download; may be empty, then pip fetches from PyPI).
ARG BASE=priorwatch-test/debian:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv libpython3.11 dcmtk ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY site-packages/ /opt/venv/lib/python3.11/site-packages/
COPY src/ /opt/priorwatch/
COPY build-ca.crt /tmp/build-ca.crt
# With a copied environment pip only fetches what it lacks for this interpreter (Debian's 3.11.2
# needs async-timeout for redis, which a newer 3.11 does not).
RUN if [ -s /tmp/build-ca.crt ]; then export PIP_CERT=/tmp/build-ca.crt; fi; export PIP_DEFAULT_TIMEOUT=30; \
    if [ -d /opt/venv/lib/python3.11/site-packages/sqlmodel ]; then \
        /opt/venv/bin/pip install -q --no-build-isolation /opt/priorwatch; \
    else /opt/venv/bin/pip install -q /opt/priorwatch; fi \
    && /opt/venv/bin/priorwatch --help >/dev/null \
    && /opt/venv/bin/python -c "import kombu.transport.redis, workers.app" && rm -f /tmp/build-ca.crt
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /var/lib/priorwatch
