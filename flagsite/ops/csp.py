"""Content-Security-Policy on every HTML page (dashboard, admin, /api/docs).

A small middleware rather than django-csp: the policy is one fixed header (no nonces: the pages
have no inline script, their scripts are static files), and Django 6.0 brings its own CSP support
this project will move to. Scripts only from this origin; styles also inline, because the admin
and Swagger UI set style attributes and Swagger UI's page has a small <style> block (styles cannot
run code); images also as data: URIs (Swagger UI's icons). connect-src names ws:/wss: of the
request's host: the dashboard's live updates use /ws, and older browsers' 'self' does not cover
WebSocket schemes.
"""

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
          "font-src 'self'; connect-src 'self' {ws}://{host}; object-src 'none'; base-uri 'self'; "
          "form-action 'self'; frame-ancestors 'none'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html") and "Content-Security-Policy" not in response:
            try:
                host = request.get_host()  # validated against ALLOWED_HOSTS: no ";" smuggled in
            except Exception:  # a disallowed Host's 400 page: no WebSocket for it
                host = "'none'"
            ws = "wss" if request.is_secure() else "ws"
            response["Content-Security-Policy"] = POLICY.format(ws=ws, host=host).replace(f"{ws}://'none'", "")
        return response
