from django.apps import AppConfig


class SharedConfig(AppConfig):
    name = "shared"
    label = "shared"
    verbose_name = "Shared"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from shared.revocation import connect_signals

        connect_signals()
