FROM python:3.11-slim
WORKDIR /app
COPY . .
# Editable, so `cronstream migrate` finds the project's migrations/ folder.
RUN pip install --no-cache-dir -e .
USER nobody
ENTRYPOINT ["cronstream"]
