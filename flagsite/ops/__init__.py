"""Operations: request ids, JSON logs, Prometheus metrics, rate limits, security logging."""
