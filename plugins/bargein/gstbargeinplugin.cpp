/* gst-phone-agent: the bargein plugin (bargein) */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstbargeinelements.h"

static gboolean plugin_init(GstPlugin *plugin) {
  gboolean ret = FALSE;
  ret |= GST_ELEMENT_REGISTER(bargein, plugin);
  return ret;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, bargein,
                  "Local barge-in detection for phone agents", plugin_init, PACKAGE_VERSION, GST_LICENSE,
                  GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
