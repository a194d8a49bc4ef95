# The application image: one image for the web, worker and beat processes (docker-compose.yml
# chooses the command). Configuration comes from environment variables only; see README.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .

# Static files are collected into the image (whitenoise serves them); the values below exist only
# so that the settings load at build time and are not part of the running configuration.
RUN DEBUG=false SECRET_KEY=collectstatic-only SITE_URL=https://build.invalid \
    python manage.py collectstatic --noinput

# The image library's files (IMAGE_STORAGE=filesystem) live under /data/media, a volume the
# app user owns; with IMAGE_STORAGE=s3 nothing is written there.
RUN useradd --create-home --uid 1000 app && mkdir -p /data/media && chown app /data/media
USER app

EXPOSE 8000
# gunicorn reads WEB_CONCURRENCY for its number of worker processes.
CMD ["gunicorn", "--config=python:convertkit.gunicorn_conf", "convertkit.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
