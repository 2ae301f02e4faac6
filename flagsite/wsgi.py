import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
application = get_wsgi_application()

from flagsite.ops.startup import prepare_web_process  # noqa: E402  (after Django is set up)

prepare_web_process()
