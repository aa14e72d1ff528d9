"""yandexgpt-grpc."""
