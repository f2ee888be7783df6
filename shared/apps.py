from django.apps import AppConfig


class SharedConfig(AppConfig):
    name = "shared"
    label = "shared"
    verbose_name = "Shared"
    default_auto_field = "django.db.models.BigAutoField"
