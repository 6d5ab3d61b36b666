# The PrivacyLens proxy image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pgerrors ./pgerrors
COPY privacy ./privacy
COPY proxy ./proxy
COPY rewriter ./rewriter
COPY demo ./demo
COPY policies ./policies
RUN pip install --no-cache-dir . && privacylens demo-data --out-dir /app/data \
    && useradd --system --home /var/lib/privacylens privacylens \
    && mkdir -p /var/lib/privacylens && chown privacylens /var/lib/privacylens
USER privacylens
EXPOSE 6432 9188
ENTRYPOINT ["privacylens"]
CMD ["serve"]
