# One image for every Reelgate process: docker-compose.yml runs it as the
# entitlements, catalog, media and worker nodes, the one-shot `migrate` and the
# one-shot `balancer render` that writes nginx's configuration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    REELGATE_HOST=0.0.0.0 \
    REELGATE_VAR_DIR=/var/lib/reelgate

# ffmpeg and ffprobe: the catalog probes every upload and takes its poster.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 reelgate \
    && useradd --system --uid 10001 --gid reelgate --home-dir /var/lib/reelgate \
       --shell /usr/sbin/nologin reelgate

WORKDIR /app

# The pinned dependencies first, in their own layer: a code change does not
# reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project. Editable on purpose: nginx/ (the balancer template) and
# web/ live beside the packages, not inside them, and are found from there.
COPY . .
RUN pip install -c constraints.txt --no-deps -e . \
    && mkdir -p /var/lib/reelgate/media /var/lib/reelgate/keys /etc/reelgate/nginx \
    && chown -R reelgate:reelgate /var/lib/reelgate /etc/reelgate

USER reelgate
ENTRYPOINT ["reelgate"]
CMD ["--help"]
