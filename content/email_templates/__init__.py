"""Email templates: the design around an email's content (Kit's "email templates").

- `designs.Design`: what a layout needs (colours, font, width, header, footer, the "View in
  browser" link), checked when made, or a creator's own HTML (`custom_html`).
- `builtins`: the designs every account has (Classic, Modern, Plain), defined in code.
- `content.models.EmailTemplate`: an account's own, as design settings or as HTML.
- A design is chosen by its key: a built-in's (BUILTINS), or the id of one of the account's
  templates (EmailTemplate.key). Broadcast.email_template and Account.default_email_template hold one;
  `designs.design_for` finds the Design, falling back to Classic for a key that names nothing.
- Rendering is broadcasts.rendering.html.email_document's, once per email when it is frozen.
"""
