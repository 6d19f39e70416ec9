FROM python:3.11-slim
WORKDIR /app
COPY . .
# The migrations and SQL ship inside the package: no editable install needed. The faust
# extra keeps both engines (CRONSTREAM_ENGINE) available in the image.
RUN pip install --no-cache-dir '.[faust]'
USER nobody
ENTRYPOINT ["cronstream"]
