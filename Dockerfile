# lkpool: a pool of off-screen Chromium browsers with a REST API, a DevTools proxy and
# LiveKit publishing. Build:  docker build -t lkpool .
# Run (see README, Docker):   docker run --rm -p 8888:8888 --shm-size=1g -e TOKEN=... lkpool
FROM python:3.12-slim-bookworm

# Debian's Chromium; Xvfb for the x11 capture mode (each instance starts its own display);
# PulseAudio for page audio; fonts so pages render text and emoji; tini reaps the
# orphans a crashed browser can leave behind PID 1; bubblewrap, slirp4netns and passt for each
# instance's sandbox (README, Isolation: it needs user namespaces, which Docker's default
# seccomp profile refuses; see README, Docker).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium xvfb pulseaudio pulseaudio-utils tini ca-certificates bubblewrap slirp4netns passt \
        fonts-liberation fonts-dejavu-core fonts-noto-color-emoji fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*

# every setting is an environment variable (lkpool serve --help lists them all)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8888 \
    ENGINE=chromium \
    CAPTURE=auto \
    CHROMIUM_PATH=/usr/bin/chromium \
    CHROMIUM_PROFILE_BASE_DIR=/var/lib/lkpool/profiles \
    XDG_RUNTIME_DIR=/tmp/runtime-lkpool

WORKDIR /opt/lkpool
COPY pyproject.toml README.md ./
COPY lkpool ./lkpool
COPY scripts/download_cef.py ./scripts/
# LKPOOL_EXTRAS="[cef]" adds livekit-browser; its binaries then come from
# `python scripts/download_cef.py` run as the lkpool user (in a derived image or at runtime)
ARG LKPOOL_EXTRAS=""
# the project itself, from this source tree; its dependencies' ranges are in pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --disable-pip-version-check ".${LKPOOL_EXTRAS}"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin lkpool \
    && mkdir -p /var/lib/lkpool/profiles \
    && chown -R lkpool:lkpool /var/lib/lkpool
COPY --chmod=0755 entrypoint.sh /usr/local/bin/entrypoint.sh

USER 10001:10001
EXPOSE 8888
# /health needs no token (it says only whether the pool is up), so the check works with a
# generated one: HOST is 0.0.0.0 here, so without TOKEN `lkpool serve` makes one for the
# run and prints it once to the container's log (SECURITY.md); pass -e TOKEN=... to choose
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8888'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]
CMD []
