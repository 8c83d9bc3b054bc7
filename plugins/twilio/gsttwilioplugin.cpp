/* gst-phone-agent: the twilio plugin (twiliosrc, twiliosink) */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gsttwilioelements.h"

static gboolean plugin_init(GstPlugin *plugin) {
  gboolean ret = FALSE;
  ret |= GST_ELEMENT_REGISTER(twiliosrc, plugin);
  ret |= GST_ELEMENT_REGISTER(twiliosink, plugin);
  return ret;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, twilio,
                  "Twilio Media Streams source and sink for phone agents", plugin_init, PACKAGE_VERSION, GST_LICENSE,
                  GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
