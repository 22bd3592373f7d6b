"""Operations: metrics, logs, health, doctor."""
