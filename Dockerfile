FROM python:3.11-slim
WORKDIR /app
COPY . .
# The migrations and SQL ship inside the package: no editable install needed.
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["cronstream"]
